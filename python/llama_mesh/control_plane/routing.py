"""Where a task goes: the service it names, or else the deployed orchestrator.

The control plane itself only routes (no model, no llama-index here): a task that names
a service goes to it (the *simple* orchestrator, the default); a task that names none
goes to the orchestrator service, the one live service of kind
SERVICE_KIND_ORCHESTRATOR (an agentic or a pipeline orchestrator, served by the same
runtime as every service), which decides the hops and runs each as a child task.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from llama_mesh.core import proto_time
from llama_mesh.core.errors import FailedPreconditionError, InvalidArgumentError
from llama_mesh.v1 import resources_pb2


def _live(service: resources_pb2.Service, now: float) -> bool:
    return any(proto_time.epoch_seconds(r.lease_expire_time) > now for r in service.replicas)


def orchestrators(services: Iterable[resources_pb2.Service]) -> list[str]:
    """Ids of the live orchestrator services, sorted."""
    now = time.time()
    return sorted(
        s.name.removeprefix("services/")
        for s in services
        if s.kind == resources_pb2.SERVICE_KIND_ORCHESTRATOR and _live(s, now)
    )


def orchestrator_for_unnamed(services: Iterable[resources_pb2.Service]) -> str:
    """The service that takes a task naming none; a clear error if there is not one."""
    found = orchestrators(services)
    if not found:
        raise InvalidArgumentError(
            'task.service is required (e.g. "echo"): no orchestrator is deployed to route '
            "a task that names no service (deploy one: `orchestrator:` in the deployment "
            "file, or LocalMesh(orchestrator=...))"
        )
    if len(found) > 1:
        raise FailedPreconditionError(
            f"task.service is empty and several orchestrators are deployed ({found}): "
            "name the one to run"
        )
    return found[0]
