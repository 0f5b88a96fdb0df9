"""The pipeline orchestrator: a fixed sequence of services, each step's output the
next step's input.

    Pipeline(["writer", "reviewer", Step("publisher", input_key="text")])

How a value becomes a step's input: with ``input_key``, ``{input_key: value}``; else,
if the step's service has exactly one input field (its schema's one required field, or
its one field), ``{that field: value}``; else a JSON object value is the input as it
is. The first step's value is what the task asks: ``client.run("...")`` sends
``{"user_msg": "..."}`` and the first step gets the text. A human service is a step
like any other: the pipeline waits for the person's answer, durably.

A step that fails ends the pipeline: the task fails with PipelineStepFailedError,
whose message names the step and its error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_mesh.core.names import check_service_id
from llama_mesh.orchestrators.plugin import (
    Decision,
    Finish,
    Hop,
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
    """One step: a service, and (optionally) which of its input fields gets the value."""

    service: str
    input_key: str | None = None

    def __post_init__(self) -> None:
        check_service_id(self.service, "pipeline step service")


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
        f"step {step.service!r} takes {fields or 'an object'}, not {type(value).__name__}: "
        "give the step an input_key naming the field the value goes into"
    )


class Pipeline(Orchestrator):
    """Runs the steps in order."""

    def __init__(self, steps: Sequence[str | Step], *, description: str = "") -> None:
        if not steps:
            raise ValueError("a pipeline needs at least one step")
        self.steps = [s if isinstance(s, Step) else Step(s) for s in steps]
        self.description = description or "A pipeline: " + " -> ".join(
            s.service for s in self.steps
        )

    def __repr__(self) -> str:
        return f"Pipeline({[s.service for s in self.steps]})"

    def routable(self, service: ServiceInfo) -> bool:
        return True  # the steps say where to go

    async def next_hops(self, run: Run) -> Decision:
        done = len(run.results)
        if done:
            last = run.results[-1]
            if not last.ok:
                raise PipelineStepFailedError(
                    f"step {done} of {len(self.steps)} ({last.hop.service}) failed: "
                    f"{last.error or last.error_type}"
                )
            if done == len(self.steps):
                return Finish(last.result, reason=f"all {done} steps done")
        step = self.steps[done]
        value = run.results[-1].result if done else run.user_msg
        task_input = step_input(value, run.service(step.service), step)
        hop = Hop(step.service, task_input, id=str(done + 1))
        return Next([hop], reason=f"step {done + 1} of {len(self.steps)}: {step.service}")
