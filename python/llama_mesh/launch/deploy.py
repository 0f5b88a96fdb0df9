"""llama_deploy-style entry points, for code that used `deploy_core` / `deploy_workflow`.

    # core.py
    asyncio.run(deploy_core(ControlPlaneConfig(), NatsQueueConfig()))

    # workflow.py
    asyncio.run(deploy_workflow(MyWorkflow(), WorkflowServiceConfig(service_name="my_workflow"),
                                ControlPlaneConfig()))

    # agent.py, tools.py, human.py, orchestrator.py: the other kinds of service
    asyncio.run(deploy_agent(FunctionAgent(tools=[...], llm=llm),
                             WorkflowServiceConfig("secret_fact_agent")))
    asyncio.run(deploy_tools([get_the_secret_fact], WorkflowServiceConfig("secret_tools")))
    asyncio.run(deploy_human(WorkflowServiceConfig("reviewer"), prompt="Review:\n{input_str}"))
    asyncio.run(deploy_orchestrator(Pipeline(["draft", "reviewer", "publish"])))

They run until cancelled (Ctrl-C), like their llama_deploy namesakes. The message
queue is NATS JetStream: embedded (a nats-server in `data_dir`) unless a URL is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_index.core.agent.workflow import AgentWorkflow, BaseWorkflowAgent
from llama_index.core.tools import BaseTool
from workflows import Workflow

from llama_mesh import config
from llama_mesh.config import (
    NatsConfig,
    RetryConfig,
    ServiceConfig,
    default,
    default_data_dir,
)
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.names import ORCHESTRATOR_SERVICE, new_id
from llama_mesh.jetstream.topology import Topology
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.orchestrators import Orchestrator, OrchestratorWorkflow
from llama_mesh.telemetry import tracing
from llama_mesh.worker.human_service import DEFAULT_PROMPT, HumanService
from llama_mesh.worker.runtime import ServiceRuntime
from llama_mesh.worker.tool_service import ToolService


class ControlPlaneConfig(config.ControlPlaneConfig):
    """Where the control plane listens (and where services and clients find it): the
    control plane's settings, with llama_deploy's ``url``."""

    @property
    def url(self) -> str:
        return self.address


# llama_deploy's NATS queue listened on NATS's well-known port; so does deploy_core's.
NATS_PORT = 4222


@dataclass
class NatsQueueConfig:
    """The message queue: NATS JetStream, embedded unless `urls` are given (NatsConfig
    under llama_deploy-style names)."""

    urls: list[str] = field(default_factory=list)
    data_dir: Path | str = field(default_factory=default_data_dir)
    port: int = NATS_PORT
    prefix: str = default(NatsConfig, "prefix")
    user_credentials: str | None = None

    def nats_config(self) -> NatsConfig:
        return NatsConfig(
            url=self.urls or None,
            data_dir=Path(self.data_dir),
            port=self.port,
            prefix=self.prefix,
            credentials=Path(self.user_credentials) if self.user_credentials else None,
        )


@dataclass
class WorkflowServiceConfig:
    """How one workflow is served; `service_name` is what clients run (ServiceConfig
    under llama_deploy's names)."""

    service_name: str
    host: str = default(ServiceConfig, "host")
    port: int = default(ServiceConfig, "port")
    description: str | None = default(ServiceConfig, "description")
    max_concurrency: int = default(ServiceConfig, "max_concurrency")
    max_attempts: int = default(RetryConfig, "max_attempts")
    timeout: float | None = default(ServiceConfig, "timeout")

    def service_config(self) -> ServiceConfig:
        return ServiceConfig(
            self.service_name,
            description=self.description,
            max_concurrency=self.max_concurrency,
            retry=RetryConfig(max_attempts=self.max_attempts),
            timeout=self.timeout,
            host=self.host,
            port=self.port,
        )


async def deploy_core(
    control_plane_config: ControlPlaneConfig | None = None,
    message_queue_config: NatsQueueConfig | None = None,
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the message queue (if embedded) and a control plane until cancelled; its
    traces go where the OTEL_* variables say (docs/operations.md)."""
    cp_config = control_plane_config or ControlPlaneConfig()
    nats = (message_queue_config or NatsQueueConfig()).nats_config()
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(tracing.exporting("control-plane"))
        urls = nats.urls
        if nats.embedded:
            assert nats.data_dir is not None
            embedded = await stack.enter_async_context(
                EmbeddedNats.start(nats.data_dir, host=nats.host, port=nats.port)
            )
            urls = [embedded.url]
        server = await stack.enter_async_context(
            ControlPlaneServer.start(
                urls,
                host=cp_config.host,
                port=cp_config.port,
                topology=Topology.of(nats),
                user_credentials=str(nats.credentials) if nats.credentials else None,
                retention=cp_config.retention,
            )
        )
        _say(f"control plane ready at {server.address} (NATS {', '.join(urls)})")
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
    """Serve `workflow` as a service until cancelled or drained; its traces go where
    the OTEL_* variables say."""
    cp_config = control_plane_config or ControlPlaneConfig()
    config = workflow_config.service_config()
    replica_id = new_id()
    with tracing.exporting(config.name, instance_id=replica_id):
        await _serve_workflow(workflow, config, cp_config, replica_id, ready)


async def _serve_workflow(
    workflow: Workflow,
    config: ServiceConfig,
    cp_config: ControlPlaneConfig,
    replica_id: str,
    ready: asyncio.Event | None,
) -> None:
    async with ServiceRuntime.start(
        workflow, config, cp_config.url, replica_id=replica_id
    ) as runtime:
        _say(
            f"service {config.name!r} ready at {runtime.address} "
            f"(replica {runtime.replica_id}, control plane {cp_config.url})"
        )
        if ready is not None:
            ready.set()
        await runtime.drained.wait()


def _say(line: str) -> None:
    """One line on stderr for the person who started it, as `up` says what runs where:
    the llama_deploy entry points run as scripts, with no logging configured."""
    print(f"llama-mesh: {line}; Ctrl-C stops it", file=sys.stderr, flush=True)


async def deploy_agent(
    agent: BaseWorkflowAgent | AgentWorkflow,
    agent_config: WorkflowServiceConfig,
    control_plane_config: ControlPlaneConfig | None = None,
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve a llama-index agent (FunctionAgent, ReActAgent, ..., or an AgentWorkflow)
    until cancelled: a task is a user message, its events the agent vocabulary of
    docs/agents.md, its chat memory the session's."""
    if not isinstance(agent, BaseWorkflowAgent | AgentWorkflow):
        raise TypeError(
            f"deploy_agent serves a llama-index agent or an AgentWorkflow; "
            f"{type(agent).__name__} is neither (deploy_workflow serves any Workflow)"
        )
    await deploy_workflow(agent, agent_config, control_plane_config, ready=ready)


async def deploy_tools(
    tools: Sequence[BaseTool | Callable[..., Any]],
    tools_config: WorkflowServiceConfig,
    control_plane_config: ControlPlaneConfig | None = None,
    *,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve llama-index tools (FunctionTools, or plain functions) as one tool service
    until cancelled; agents elsewhere use them through MeshTools(service_name)."""
    await deploy_workflow(ToolService(tools), tools_config, control_plane_config, ready=ready)


async def deploy_human(
    human_config: WorkflowServiceConfig,
    control_plane_config: ControlPlaneConfig | None = None,
    *,
    prompt: str = DEFAULT_PROMPT,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve a human service (tasks a person answers; `prompt` has `{input_str}`) until
    cancelled. `human_config.timeout` bounds how long a person may take."""
    await deploy_workflow(HumanService(prompt), human_config, control_plane_config, ready=ready)


async def deploy_orchestrator(
    orchestrator: Orchestrator,
    control_plane_config: ControlPlaneConfig | None = None,
    *,
    orchestrator_config: WorkflowServiceConfig | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve the orchestrator that routes tasks naming no service, until cancelled."""
    service = orchestrator_config or WorkflowServiceConfig(
        ORCHESTRATOR_SERVICE, max_concurrency=256
    )
    await deploy_workflow(
        OrchestratorWorkflow(orchestrator), service, control_plane_config, ready=ready
    )
