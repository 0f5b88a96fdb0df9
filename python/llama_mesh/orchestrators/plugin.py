"""The orchestrator plug-in interface: decide the next hops of a task, take each result.

llama_deploy's BaseOrchestrator had ``get_next_messages(task, state)`` and
``add_result_to_state(result, state)``; here they are typed and async:

    class EveryServiceOnce(Orchestrator):
        async def next_hops(self, run: Run) -> Decision:
            left = [s for s in run.services if s.name not in {r.hop.service for r in run.results}]
            if not left:
                return Finish([r.result for r in run.results])
            return Next([Hop(s.name, run.input) for s in left], reason="all at once")

An orchestrator is served as a service of the mesh (serving.py): the control plane
routes a task that names no service to it, each ``Next`` and ``Finish`` is an event on
the task's stream (``llama_mesh.OrchestratorDecision``), each hop runs as a child task
in the task's session (with its deadline and cancellation) and each hop's end is an
event too (``llama_mesh.HopFinished``). The task's result is the ``Finish`` result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.mesh_tools import kind_name, service_output


@dataclass(frozen=True)
class ServiceInfo:
    """A registered service an orchestrator may route to."""

    name: str
    kind: str  # "workflow", "agent", "tool", "human" or "orchestrator"
    description: str
    input_schema: dict[str, Any]

    @classmethod
    def from_proto(cls, service: resources_pb2.Service) -> ServiceInfo:
        return cls(
            name=service.name.removeprefix("services/"),
            kind=kind_name(service.kind),
            description=service.description,
            input_schema=json_format.MessageToDict(service.input_schema),
        )

    def output(self, result: Any) -> Any:
        """What the service's result answers (an agent's response text, else the result)."""
        return service_output(self.kind, result)

    def single_input(self) -> str | None:
        """The service's one input field, if it has exactly one (required or declared);
        an agent's is its user message."""
        if self.kind == "agent":
            return "user_msg"
        required = self.input_schema.get("required") or []
        if len(required) == 1:
            return str(required[0])
        properties = self.input_schema.get("properties") or {}
        return next(iter(properties)) if len(properties) == 1 else None


@dataclass(frozen=True)
class Hop:
    """Run `service` with `input` (its task input, a JSON object) as a child task.

    `id` is the orchestrator's own label for the hop (e.g. the model's tool call id).
    """

    service: str
    input: dict[str, Any]
    id: str = ""


@dataclass(frozen=True)
class Next:
    """Run these hops (concurrently), then decide again."""

    hops: list[Hop]
    reason: str = ""


@dataclass(frozen=True)
class Finish:
    """The task is done: `result` is its result."""

    result: Any
    reason: str = ""


Decision = Next | Finish


@dataclass(frozen=True)
class HopResult:
    """How a hop ended: its child task's result, or its error."""

    hop: Hop
    task: str  # the child task's resource name ("" if it could not be created)
    result: Any = None
    error_type: str = ""  # e.g. "ValueError"; empty when the hop succeeded
    error: str = ""  # the error's message

    @property
    def ok(self) -> bool:
        return not self.error_type


@dataclass
class Run:
    """One task being orchestrated: what it asked, where it may go, what happened."""

    task: str  # the task's resource name
    input: dict[str, Any]
    services: list[ServiceInfo]
    results: list[HopResult] = field(default_factory=list)
    # The orchestrator's own state for this run (kept in memory while the task runs).
    state: dict[str, Any] = field(default_factory=dict)

    def service(self, name: str) -> ServiceInfo | None:
        return next((s for s in self.services if s.name == name), None)

    @property
    def user_msg(self) -> Any:
        """What the task asks: its `user_msg` when that is its only field (as
        ``client.run("...")`` sends it), else its whole input."""
        if set(self.input) == {"user_msg"}:
            return self.input["user_msg"]
        return self.input


class Orchestrator(ABC):
    """Decides where a task goes next. Subclass it and serve it as the orchestrator."""

    #: What ``ListServices`` shows for the orchestrator service.
    description: str = "Routes a task that names no service."
    #: At most this many decisions per task; then the task fails (TooManyHopsError).
    max_decisions: int = 50

    @abstractmethod
    async def next_hops(self, run: Run) -> Decision:
        """The next hops to run, or Finish with the result."""

    async def add_result(self, run: Run, result: HopResult) -> None:  # noqa: B027
        """Take a hop's result into the run's state (`run.results` has it already)."""

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of the task input the orchestrator accepts."""
        return {"type": "object"}

    def routable(self, service: ServiceInfo) -> bool:
        """Whether a registered service is offered to this orchestrator (not tool
        services, whose tools are for agents, nor orchestrators)."""
        return service.kind not in ("tool", "orchestrator")
