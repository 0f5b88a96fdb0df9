"""llama-mesh: llama-index Workflows as services in a gRPC service mesh.

This module is the public API; everything else is internal and may move.

    from llama_mesh import LocalMesh

    async with LocalMesh({"echo": EchoWorkflow()}) as mesh:
        session = await mesh.client.create_session()
        print(await session.run("echo", arg1="hello"))

The client and the errors load at once; the server side (LocalMesh, the service
runtime, deploy_*) loads on first use, so a program that only calls the mesh does
not import llama-index or NATS.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Client
from llama_mesh.client import (
    AsyncClient,
    AsyncSession,
    Client,
    Session,
    StreamedEvent,
    SyncTaskHandle,
    TaskHandle,
)

# Errors
from llama_mesh.core.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    MeshError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    RetryableError,
    TaskCancelledError,
    TaskDeadlineExceededError,
    TaskError,
    TaskFailedError,
    TaskResourceExhaustedError,
    TokenBudgetExceededError,
    UnauthenticatedError,
    UnavailableError,
)

if TYPE_CHECKING:
    from llama_mesh.config import RetryConfig, ServiceConfig
    from llama_mesh.launch.deploy import (
        ControlPlaneConfig,
        NatsQueueConfig,
        WorkflowServiceConfig,
        deploy_agent,
        deploy_core,
        deploy_human,
        deploy_orchestrator,
        deploy_tools,
        deploy_workflow,
    )
    from llama_mesh.launch.local import LocalMesh
    from llama_mesh.worker.human_service import HumanService
    from llama_mesh.worker.mesh_tools import MeshTools
    from llama_mesh.worker.nested import add_workflows
    from llama_mesh.worker.runtime import ServiceRuntime
    from llama_mesh.worker.tool_service import ToolService

__version__ = "0.1.0"

# Server side, imported on first use: name -> module.
_LAZY = {
    "LocalMesh": "llama_mesh.launch.local",
    "ServiceConfig": "llama_mesh.config",
    "RetryConfig": "llama_mesh.config",
    "ServiceRuntime": "llama_mesh.worker.runtime",
    "add_workflows": "llama_mesh.worker.nested",
    "ToolService": "llama_mesh.worker.tool_service",
    "HumanService": "llama_mesh.worker.human_service",
    "MeshTools": "llama_mesh.worker.mesh_tools",
    "ControlPlaneConfig": "llama_mesh.launch.deploy",
    "NatsQueueConfig": "llama_mesh.launch.deploy",
    "WorkflowServiceConfig": "llama_mesh.launch.deploy",
    "deploy_core": "llama_mesh.launch.deploy",
    "deploy_workflow": "llama_mesh.launch.deploy",
    "deploy_agent": "llama_mesh.launch.deploy",
    "deploy_tools": "llama_mesh.launch.deploy",
    "deploy_human": "llama_mesh.launch.deploy",
    "deploy_orchestrator": "llama_mesh.launch.deploy",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llama_mesh' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [  # noqa: RUF022 (grouped by kind, like the imports above)
    # Client
    "AsyncClient",
    "AsyncSession",
    "Client",
    "Session",
    "StreamedEvent",
    "SyncTaskHandle",
    "TaskHandle",
    # Serving
    "LocalMesh",
    "ServiceConfig",
    "RetryConfig",
    "ServiceRuntime",
    "add_workflows",
    # Tools, humans (orchestrators: llama_mesh.orchestrators)
    "ToolService",
    "HumanService",
    "MeshTools",
    # llama_deploy-style entry points
    "ControlPlaneConfig",
    "NatsQueueConfig",
    "WorkflowServiceConfig",
    "deploy_core",
    "deploy_workflow",
    "deploy_agent",
    "deploy_tools",
    "deploy_human",
    "deploy_orchestrator",
    # Errors
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "MeshError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RetryableError",
    "TaskCancelledError",
    "TaskDeadlineExceededError",
    "TaskError",
    "TaskFailedError",
    "TaskResourceExhaustedError",
    "TokenBudgetExceededError",
    "UnauthenticatedError",
    "UnavailableError",
    "__version__",
]
