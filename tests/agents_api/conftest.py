"""Fixtures: a control plane with the Agents and Responses APIs, the real gateway in
front of it, and the official clients (llama-stack-client, openai) pointed at it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from llama_stack_client import AsyncLlamaStackClient

from llama_mesh.config import ModelConfig, ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.names import AGENTS_SERVICE, service_name
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.testing import RecordedRequest, Reply, ScriptedModel
from llama_mesh.v1 import control_plane_pb2, control_plane_pb2_grpc, resources_pb2
from llama_mesh.worker.configured_agent import ConfiguredAgentRunner
from llama_mesh.worker.runtime import ServiceRuntime
from llama_mesh_gateway import GatewayServer


@dataclass
class ApiMesh:
    """The control plane's gRPC address and the gateway's base URL."""

    address: str
    url: str
    channel: grpc.aio.Channel


@pytest.fixture
async def api_mesh(nats: EmbeddedNats) -> AsyncIterator[ApiMesh]:
    async with (
        ControlPlaneServer.start([nats.url]) as cp,
        GatewayServer(cp.address, port=0) as gateway,
        grpc.aio.insecure_channel(cp.address) as channel,
    ):
        yield ApiMesh(cp.address, gateway.url, channel)


@pytest.fixture
async def llama(api_mesh: ApiMesh) -> AsyncIterator[AsyncLlamaStackClient]:
    async with (
        httpx.AsyncClient(timeout=30) as http,
        AsyncLlamaStackClient(base_url=api_mesh.url, http_client=http, max_retries=0) as client,
    ):
        yield client


async def register(
    channel: grpc.aio.Channel,
    service_id: str,
    kind: resources_pb2.ServiceKind.ValueType,
    *,
    description: str = "",
    models: tuple[str, ...] = (),
) -> None:
    """Register a service definition with one replica (as a replica would)."""
    stub = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
    await stub.RegisterService(
        control_plane_pb2.RegisterServiceRequest(
            service=resources_pb2.Service(
                name=service_name(service_id), kind=kind, description=description, models=models
            ),
            replica=resources_pb2.Replica(replica_id=f"{service_id}-1"),
        )
    )


async def register_agents_service(channel: grpc.aio.Channel, *models: str) -> None:
    """The built-in agent service's registration, which tells what models there are."""
    await register(channel, AGENTS_SERVICE, resources_pb2.SERVICE_KIND_AGENT, models=models)


@dataclass
class AgentsMesh(ApiMesh):
    """ApiMesh with the built-in agent service on the scripted model."""

    model: ScriptedModel
    runtime: ServiceRuntime


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


@contextlib.asynccontextmanager
async def agents_service(cp: str, model_url: str) -> AsyncIterator[ServiceRuntime]:
    """The built-in agent service (one replica, in this process) on the scripted model."""
    runner = ConfiguredAgentRunner({"scripted": ModelConfig(base_url=model_url, max_retries=0)})
    # The replica closes its runner (the model's connections) as it stops.
    async with ServiceRuntime.start(runner, ServiceConfig(AGENTS_SERVICE), cp) as runtime:
        yield runtime


@pytest.fixture
async def agents_mesh(nats: EmbeddedNats, model: ScriptedModel) -> AsyncIterator[AgentsMesh]:
    async with (
        model.serve() as model_url,
        ControlPlaneServer.start([nats.url]) as cp,
        agents_service(cp.address, model_url) as runtime,
        GatewayServer(cp.address, port=0) as gateway,
        grpc.aio.insecure_channel(cp.address) as channel,
    ):
        yield AgentsMesh(cp.address, gateway.url, channel, model, runtime)


@pytest.fixture
async def client(agents_mesh: AgentsMesh) -> AsyncIterator[AsyncLlamaStackClient]:
    async with (
        httpx.AsyncClient(timeout=30) as http,
        AsyncLlamaStackClient(
            base_url=agents_mesh.url, http_client=http, max_retries=0
        ) as llama_client,
    ):
        yield llama_client


def echo(request: RecordedRequest) -> Reply:
    """The scripted model's default: `ECHO(n): <the last user message>`, n counting the
    user messages it was sent, streamed in 4-character chunks."""
    users = [m for m in request.messages if m.get("role") == "user"]
    text = f"ECHO({len(users)}): {users[-1]['content'] if users else ''}"
    return Reply(text, chunks=[text[i : i + 4] for i in range(0, len(text), 4)])
