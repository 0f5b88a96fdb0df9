"""Everything in one process, for notebooks and tests.

    async with LocalMesh({"echo": EchoWorkflow()}) as mesh:
        session = await mesh.client.create_session()
        await session.run("echo", arg1="hi")

Starts an embedded nats-server (unless `nats_url` is given), a control plane and one
replica per service; leaving the block stops all of it in reverse order. With
``orchestrator=`` (a Pipeline, an AgenticOrchestrator...) a task that names no service,
``await mesh.client.run("What is the secret fact?")``, goes to it (service
"orchestrator").
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from workflows import Workflow

from llama_mesh.client import AsyncClient
from llama_mesh.config import ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.names import ORCHESTRATOR_SERVICE
from llama_mesh.jetstream.topology import Topology
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.orchestrators import Orchestrator, OrchestratorWorkflow
from llama_mesh.worker.runtime import ServiceRuntime
from llama_mesh.worker.workflow_runner import WorkflowRunner

# A workflow, or a runner built for it (e.g. a deployment file's agent: service_builder).
ServiceSpec = Workflow | WorkflowRunner | tuple[Workflow | WorkflowRunner, ServiceConfig]


class LocalMesh:
    """An in-process mesh: embedded NATS, a control plane, services and a client."""

    def __init__(
        self,
        services: Mapping[str, ServiceSpec] | None = None,
        *,
        nats_url: str | None = None,
        data_dir: Path | None = None,
        topology: Topology | None = None,
        orchestrator: Orchestrator | None = None,
    ) -> None:
        self._specs = dict(services or {})
        if orchestrator is not None:
            # The service a task that names none goes to (`mesh.client.run("...")`).
            if ORCHESTRATOR_SERVICE in self._specs:
                raise ValueError(
                    f"a service is named {ORCHESTRATOR_SERVICE!r} and an orchestrator is given: "
                    "rename the service"
                )
            self._specs[ORCHESTRATOR_SERVICE] = OrchestratorWorkflow(orchestrator)
        self._nats_url = nats_url
        self._data_dir = data_dir
        self.topology = topology or Topology()
        self._stack = contextlib.AsyncExitStack()
        self.nats: EmbeddedNats | None = None
        self.control_plane: ControlPlaneServer | None = None
        self.services: dict[str, list[ServiceRuntime]] = {}
        self._client: AsyncClient | None = None

    @property
    def nats_url(self) -> str:
        if self._nats_url:
            return self._nats_url
        assert self.nats is not None, "the mesh is not running"
        return self.nats.url

    @property
    def address(self) -> str:
        """The control plane's gRPC address, "127.0.0.1:PORT"."""
        assert self.control_plane is not None, "the mesh is not running"
        return self.control_plane.address

    @property
    def client(self) -> AsyncClient:
        assert self._client is not None, "the mesh is not running"
        return self._client

    async def __aenter__(self) -> LocalMesh:
        try:
            if self._nats_url is None:
                data_dir = self._data_dir
                if data_dir is None:
                    data_dir = Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
                self.nats = await self._stack.enter_async_context(
                    EmbeddedNats.start(data_dir / "nats")
                )
            self.control_plane = await self._stack.enter_async_context(
                ControlPlaneServer.start([self.nats_url], topology=self.topology)
            )
            for name, spec in self._specs.items():
                workflow, config = spec if isinstance(spec, tuple) else (spec, ServiceConfig(name))
                await self.add_service(workflow, config)
            self._client = AsyncClient(self.address)
            self._stack.push_async_callback(self._client.close)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def add_service(
        self, workflow: Workflow | WorkflowRunner, config: ServiceConfig
    ) -> ServiceRuntime:
        """Start one more replica of a service; it stops with the mesh."""
        runtime = await self._stack.enter_async_context(
            ServiceRuntime.start(workflow, config, self.address, drain_timeout=5.0)
        )
        self.services.setdefault(config.name, []).append(runtime)
        return runtime

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
