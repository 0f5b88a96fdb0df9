"""Fixtures: a mesh with authentication on (real NATS, control plane, one replica),
and one API key per role."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from llama_mesh.client import AsyncClient, Credentials
from llama_mesh.config import SecurityConfig, ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.access import new_secret
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.worker.runtime import ServiceRuntime

from mesh_workflows import EchoWorkflow

# key id -> roles; each test mesh gets a fresh secret for each.
ROLES: dict[str, list[str]] = {
    "admin": ["admin"],
    "client": ["client"],
    "echo": ["service:echo", "client"],
    "echo-only": ["service:echo"],
    "other": ["service:other"],
}


@dataclass
class SecureMesh:
    """A running mesh that authenticates every call."""

    control_plane: str
    tokens: dict[str, str]
    server: ControlPlaneServer
    replicas: dict[str, ServiceRuntime] = field(default_factory=dict)
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    def metadata(self, who: str | None) -> list[tuple[str, str]]:
        return [] if who is None else [("authorization", f"Bearer {self.tokens[who]}")]

    def client(self, who: str | None) -> AsyncClient:
        return AsyncClient(
            self.control_plane,
            credentials=Credentials(token=None if who is None else self.tokens[who]),
            reconnect_timeout=1.0,
        )

    async def add_replica(self, workflow: Any, name: str, who: str) -> ServiceRuntime:
        runtime = await self.stack.enter_async_context(
            ServiceRuntime.start(
                workflow,
                ServiceConfig(name),
                self.control_plane,
                drain_timeout=2.0,
                credentials=Credentials(token=self.tokens[who]),
                security=SecurityConfig(),
            )
        )
        self.replicas[name] = runtime
        return runtime


@pytest.fixture
async def secure_mesh(nats: EmbeddedNats) -> AsyncIterator[SecureMesh]:
    tokens: dict[str, str] = {}
    installed = []
    for key_id, roles in ROLES.items():
        token, digest = new_secret(key_id)
        tokens[key_id] = token
        installed.append((key_id, roles, digest))
    async with (
        ControlPlaneServer.start(
            [nats.url], security=SecurityConfig(), install_keys=installed
        ) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        mesh = SecureMesh(server.address, tokens, server, stack=stack)
        await mesh.add_replica(EchoWorkflow(), "echo", "echo")
        yield mesh


async def call(
    channel: grpc.aio.Channel,
    method: str,
    request: Any,
    response_type: Any,
    metadata: list[tuple[str, str]],
    *,
    streaming: bool = False,
) -> grpc.StatusCode:
    """The status code of one call (OK if it succeeded or streamed a first item)."""
    try:
        if streaming:
            stream = channel.unary_stream(
                method,
                request_serializer=type(request).SerializeToString,
                response_deserializer=response_type.FromString,
            )(request, metadata=metadata, timeout=5)
            try:
                async for _ in stream:
                    break
            finally:
                stream.cancel()
        else:
            await channel.unary_unary(
                method,
                request_serializer=type(request).SerializeToString,
                response_deserializer=response_type.FromString,
            )(request, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK
