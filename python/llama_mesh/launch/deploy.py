"""llama_deploy-style entry points, for code that used `deploy_core` / `deploy_workflow`.

    # core.py
    asyncio.run(deploy_core(ControlPlaneConfig(), NatsQueueConfig()))

    # workflow.py
    asyncio.run(deploy_workflow(MyWorkflow(), WorkflowServiceConfig(service_name="my_workflow"),
                                ControlPlaneConfig()))

Both run until cancelled (Ctrl-C), like their llama_deploy namesakes. The message
queue is NATS JetStream: embedded (a nats-server in `data_dir`) unless a URL is given.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from workflows import Workflow

from llama_mesh.config import RetryConfig, ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.jetstream.topology import Topology
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.worker.runtime import ServiceRuntime


@dataclass
class ControlPlaneConfig:
    """Where the control plane listens (and where services and clients find it)."""

    host: str = "127.0.0.1"
    port: int = 50051

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class NatsQueueConfig:
    """The message queue: NATS JetStream, embedded unless `urls` are given."""

    urls: list[str] = field(default_factory=list)
    data_dir: Path = Path(".llama-mesh/nats")
    port: int = 4222
    prefix: str = "mesh"
    user_credentials: str | None = None


@dataclass
class WorkflowServiceConfig:
    """How one workflow is served; `service_name` is what clients run."""

    service_name: str
    host: str = "127.0.0.1"
    port: int = 0
    description: str | None = None
    max_concurrency: int = 16
    max_attempts: int = 3
    timeout: float | None = None


async def deploy_core(
    control_plane_config: ControlPlaneConfig | None = None,
    message_queue_config: NatsQueueConfig | None = None,
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the message queue (if embedded) and a control plane until cancelled."""
    cp_config = control_plane_config or ControlPlaneConfig()
    queue = message_queue_config or NatsQueueConfig()
    async with contextlib.AsyncExitStack() as stack:
        urls = list(queue.urls)
        if not urls:
            nats = await stack.enter_async_context(
                EmbeddedNats.start(queue.data_dir, port=queue.port)
            )
            urls = [nats.url]
        await stack.enter_async_context(
            ControlPlaneServer.start(
                urls,
                host=cp_config.host,
                port=cp_config.port,
                topology=Topology(prefix=queue.prefix),
                user_credentials=queue.user_credentials,
            )
        )
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()  # until cancelled


async def deploy_workflow(
    workflow: Workflow,
    workflow_config: WorkflowServiceConfig,
    control_plane_config: ControlPlaneConfig | None = None,
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve `workflow` as a service until cancelled or drained."""
    cp_config = control_plane_config or ControlPlaneConfig()
    config = ServiceConfig(
        workflow_config.service_name,
        description=workflow_config.description,
        max_concurrency=workflow_config.max_concurrency,
        retry=RetryConfig(max_attempts=workflow_config.max_attempts),
        timeout=workflow_config.timeout,
        host=workflow_config.host,
        port=workflow_config.port,
    )
    async with ServiceRuntime.start(workflow, config, cp_config.url) as runtime:
        if ready is not None:
            ready.set()
        await runtime.drained.wait()
