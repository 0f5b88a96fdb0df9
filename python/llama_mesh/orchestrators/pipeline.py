"""The pipeline orchestrator: a fixed sequence (or DAG) of services, each step's output
the next step's input.

    Pipeline(["writer", "reviewer", Step("publisher", input_key="text")])
    Pipeline([Step("facts"), Step("jokes", after=()), Step("editor", after=("facts", "jokes"))])

Steps run in the order given, each after the one before it, unless a step names the
steps it follows (``after``, by their ``id``: the service id unless given): steps that
can run at the same time do (one decision, several hops). A step follows only steps
listed before it, so a pipeline has no cycles.

How a value becomes a step's input: with ``input_key``, ``{input_key: value}``; else,
if the step's service has exactly one input field (its schema's one required field, or
its one field; an agent's ``user_msg``), ``{that field: value}``; else a JSON object
value is the input as it is. A step's value is the output of the step it follows (an
agent's response text); of several, ``{step id: output}``; of none, what the task asks
(``client.run("...")`` sends ``{"user_msg": "..."}`` and such a step gets the text).
The pipeline's result is the output of its last step (of several last steps,
``{step id: output}``). A human service is a step like any other: the pipeline waits
for the person's answer, durably.

A step that fails ends the pipeline: the task fails with PipelineStepFailedError,
whose message names the step and its error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from llama_mesh.core.names import check_service_id
from llama_mesh.orchestrators.plugin import (
    Decision,
    Finish,
    Hop,
    HopResult,
    Next,
    Orchestrator,
    Run,
    ServiceInfo,
)


class PipelineStepFailedError(RuntimeError):
    """A step of the pipeline failed; the pipeline stops."""


class PipelineInputError(ValueError):
    """A step's input cannot be made from the value before it."""


@dataclass(frozen=True)
class Step:
    """One step: a service; which of its input fields gets the value (``input_key``);
    how other steps name it (``id``, the service id by default); the steps whose
    outputs it takes (``after``: the step listed before it by default, ``()`` none)."""

    service: str
    input_key: str | None = None
    id: str = ""
    after: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_service_id(self.service, "pipeline step service")

    @property
    def name(self) -> str:
        return self.id or self.service


def step_input(value: Any, service: ServiceInfo | None, step: Step) -> dict[str, Any]:
    """The input of `step` when the value before it is `value`."""
    if step.input_key:
        return {step.input_key: value}
    field = service.single_input() if service is not None else None
    if field is not None:
        return {field: value}
    if isinstance(value, dict):
        return value
    fields = sorted((service.input_schema.get("properties") or {}) if service else [])
    raise PipelineInputError(
        f"step {step.name!r} takes {fields or 'an object'}, not {type(value).__name__}: "
        "give the step an input_key naming the field the value goes into"
    )


def _ordered(steps: Sequence[str | Step]) -> list[Step]:
    """The steps with every `after` made explicit; ValueError for a bad graph."""
    ordered: list[Step] = []
    for given in steps:
        step = given if isinstance(given, Step) else Step(given)
        if step.after is None:
            step = replace(step, after=(ordered[-1].name,) if ordered else ())
        known = {s.name for s in ordered}
        if step.name in known:
            raise ValueError(f"two steps are named {step.name!r}: give one an id")
        missing = [name for name in step.after or () if name not in known]
        if missing:
            raise ValueError(
                f"step {step.name!r} follows {missing}, which are not steps listed before it"
            )
        ordered.append(step)
    return ordered


class Pipeline(Orchestrator):
    """Runs the steps in order, each as soon as the steps it follows are done."""

    def __init__(self, steps: Sequence[str | Step], *, description: str = "") -> None:
        if not steps:
            raise ValueError("a pipeline needs at least one step")
        self.steps = _ordered(steps)
        followed = {name for step in self.steps for name in step.after or ()}
        self.last = [s.name for s in self.steps if s.name not in followed]
        self._index = {s.name: i + 1 for i, s in enumerate(self.steps)}
        self.description = description or "A pipeline: " + " -> ".join(
            s.service for s in self.steps
        )

    def __repr__(self) -> str:
        return f"Pipeline({[s.name for s in self.steps]})"

    def routable(self, service: ServiceInfo) -> bool:
        return True  # the steps say where to go

    @staticmethod
    def _output(run: Run, result: HopResult) -> Any:
        service = run.service(result.hop.service)
        return service.output(result.result) if service is not None else result.result

    def _label(self, name: str) -> str:
        return f"step {self._index[name]} of {len(self.steps)}"

    async def next_hops(self, run: Run) -> Decision:
        outputs: dict[str, Any] = {}
        for result in run.results:
            if not result.ok:
                raise PipelineStepFailedError(
                    f"{self._label(result.hop.id)} ({result.hop.service}) failed: "
                    f"{result.error or result.error_type}"
                )
            outputs[result.hop.id] = self._output(run, result)
        if len(outputs) == len(self.steps):
            final = (
                outputs[self.last[0]]
                if len(self.last) == 1
                else {name: outputs[name] for name in self.last}
            )
            return Finish(final, reason=f"all {len(self.steps)} steps done")
        hops = []
        for step in self.steps:
            after = step.after or ()
            if step.name in outputs or not all(name in outputs for name in after):
                continue
            if not after:
                value = run.user_msg
            elif len(after) == 1:
                value = outputs[after[0]]
            else:
                value = {name: outputs[name] for name in after}
            task_input = step_input(value, run.service(step.service), step)
            hops.append(Hop(step.service, task_input, id=step.name))
        reason = "; ".join(f"{self._label(h.id)}: {h.service}" for h in hops)
        return Next(hops, reason=reason)
