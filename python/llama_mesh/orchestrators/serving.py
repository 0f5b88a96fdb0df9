"""An orchestrator served as a service of the mesh: the same runtime as every service.

    async with LocalMesh(services, orchestrator=Pipeline(["draft", "reviewer", "publish"])):
        ...

The control plane routes a task that names no service to the one service of kind
ORCHESTRATOR; this workflow runs the orchestrator's loop for it: ask for a decision,
publish it (``llama_mesh.OrchestratorDecision``), run the hops as child tasks
concurrently, publish how each ended (``llama_mesh.HopFinished``), hand the results to
the orchestrator, until it finishes. The events are published directly (not through the
workflow's event stream), so a client sees each decision before its hops. Hops are child
tasks like any call from a task (worker/child_tasks.py), so a replayed attempt finds the
hops it started before (a question put to a person is asked once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent

from llama_mesh.client import task_result
from llama_mesh.core.errors import MeshError, TaskError, TaskFailedError, UnavailableError
from llama_mesh.orchestrators.plugin import (
    Finish,
    Hop,
    HopResult,
    Next,
    Orchestrator,
    Run,
    ServiceInfo,
)
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.child_tasks import RunningTask, publish_event, run_child, running_task
from llama_mesh.worker.workflow_runner import event_payload

logger = logging.getLogger(__name__)


class TooManyDecisionsError(RuntimeError):
    """The orchestrator did not finish within its max_decisions."""


# Event types on the orchestrated task's stream.
DECISION = "llama_mesh.OrchestratorDecision"  # {"hops": [...], "finish": bool, "reason"}
HOP_FINISHED = "llama_mesh.HopFinished"  # {"service", "task", "hop_id", "ok", "result", ...}


def _live(service: resources_pb2.Service) -> bool:
    return bool(service.replicas)  # ListServices returns live replicas only


async def _run_hop(parent: RunningTask, hop: Hop) -> HopResult:
    try:
        task = await run_child(hop.service, hop.input, details={"hop": hop.id}, parent=parent)
    except UnavailableError:
        raise
    except MeshError as err:  # e.g. the service is not registered
        return HopResult(hop, "", error_type=type(err).__name__, error=err.message)
    try:
        return HopResult(hop, task.name, result=task_result(task))
    except TaskFailedError as err:
        return HopResult(hop, task.name, error_type=err.error_type, error=task.error.message)
    except TaskError as err:
        return HopResult(hop, task.name, error_type=type(err).__name__, error=task.error.message)


class OrchestratorWorkflow(Workflow):
    """Serves an Orchestrator: routes each task it is given through the mesh."""

    mesh_service_kind = resources_pb2.SERVICE_KIND_ORCHESTRATOR

    def __init__(self, orchestrator: Orchestrator) -> None:
        super().__init__(timeout=None)
        self.orchestrator = orchestrator
        self.description = orchestrator.description

    def mesh_input_schema(self) -> dict[str, Any]:
        return self.orchestrator.input_schema()

    async def _services(self, parent: RunningTask) -> list[ServiceInfo]:
        assert parent.caller is not None
        services = await parent.caller.client.list_services()
        infos = [ServiceInfo.from_proto(s) for s in services if _live(s)]
        return [s for s in infos if self.orchestrator.routable(s)]

    @step
    async def route(self, ctx: Context, ev: StartEvent) -> StopEvent:
        parent = running_task("an orchestrator")
        task_input = event_payload(ev)
        run = Run(parent.name, task_input, await self._services(parent))
        orchestrator = self.orchestrator
        for _ in range(orchestrator.max_decisions):
            decision = await orchestrator.next_hops(run)
            if isinstance(decision, Finish):
                await publish_event(
                    DECISION, {"hops": [], "finish": True, "reason": decision.reason}
                )
                logger.info("task %s: finished (%s)", parent.name, decision.reason)
                return StopEvent(result=decision.result)
            if not isinstance(decision, Next) or not decision.hops:
                raise TypeError(
                    f"{type(orchestrator).__name__}.next_hops returned {decision!r}: "
                    "expected Next with at least one hop, or Finish"
                )
            hops = [{"service": h.service, "input": h.input, "id": h.id} for h in decision.hops]
            await publish_event(
                DECISION, {"hops": hops, "finish": False, "reason": decision.reason}
            )
            results = await asyncio.gather(*(_run_hop(parent, hop) for hop in decision.hops))
            for result in results:
                run.results.append(result)
                await publish_event(
                    HOP_FINISHED,
                    {
                        "service": result.hop.service,
                        "task": result.task,
                        "hop_id": result.hop.id,
                        "ok": result.ok,
                        "result": result.result,
                        "error_type": result.error_type,
                        "error": result.error,
                    },
                )
                await orchestrator.add_result(run, result)
        raise TooManyDecisionsError(
            f"{type(orchestrator).__name__} made {orchestrator.max_decisions} decisions "
            "without finishing"
        )
