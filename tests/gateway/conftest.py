"""Fixtures: the test proto compiled once, its echo servicer on a real grpc.aio server,
and the gateway in front of it on a real uvicorn server (all on 127.0.0.1 port 0)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import importlib.resources
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import any_pb2, empty_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from grpc_tools import protoc

from llama_mesh_gateway import GatewayServer

from .compat_upstream import CompatServicer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROTOS = HERE / "protos"
SERVICE = "gwtest.v1.TestService"
CODES = {c.value[0]: c for c in grpc.StatusCode}


@dataclass
class CompiledApi:
    """The compiled test proto: its descriptor set and generated messages."""

    descriptor_set: bytes
    pb2: ModuleType
    compat: ModuleType


def compile_protos(out: Path) -> CompiledApi:
    """Compile tests/gateway/protos with imports and source info into `out`."""
    wkt = str(importlib.resources.files("grpc_tools") / "_proto")
    descriptor = out / "gwtest.binpb"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{ROOT / 'proto'}",
        f"-I{wkt}",
        f"--python_out={out}",
        f"--descriptor_set_out={descriptor}",
        "--include_imports",
        "--include_source_info",
        "gwtest/v1/gwtest.proto",
        "gwtest/v1/compat.proto",
    ]
    assert protoc.main(args) == 0, "protoc failed on the test proto"
    sys.path.insert(0, str(out))
    try:
        pb2 = importlib.import_module("gwtest.v1.gwtest_pb2")
        compat = importlib.import_module("gwtest.v1.compat_pb2")
    finally:
        sys.path.remove(str(out))
    return CompiledApi(descriptor.read_bytes(), pb2, compat)


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory) -> CompiledApi:
    return compile_protos(tmp_path_factory.mktemp("gwtest"))


@dataclass
class Servicer:
    """What the test servicer saw, for tests to wait on."""

    pb2: ModuleType
    sleep_started: asyncio.Event = field(default_factory=asyncio.Event)
    sleep_cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    watch_hanging: asyncio.Event = field(default_factory=asyncio.Event)
    watch_cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    watch_requests: list[Any] = field(default_factory=list)

    def echo(self, method: str) -> Any:
        async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            request.method = method
            return request

        return handler

    async def delete_item(self, request: Any, context: Any) -> empty_pb2.Empty:
        return empty_pb2.Empty()

    async def fail(self, request: Any, context: Any) -> Any:
        status = status_pb2.Status(code=request.small, message=request.name)
        info = error_details_pb2.ErrorInfo(
            reason="TEST_FAILURE", domain="gwtest", metadata={"k": "v"}
        )
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field="name", description="bad")
            ]
        )
        for detail in (info, bad):
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        await context.abort_with_status(rpc_status.to_status(status))

    async def meta(self, request: Any, context: Any) -> Any:
        reply = self.pb2.Echo(method="Meta")
        for key, value in context.invocation_metadata():
            if isinstance(value, bytes):
                value = "b64:" + base64.b64encode(value).decode()
            reply.labels[key] = value
        remaining = context.time_remaining()
        reply.ratio = -1.0 if remaining is None else remaining
        await context.send_initial_metadata([("x-initial", "first"), ("x-bin-bin", b"\x00\x01")])
        context.set_trailing_metadata([("x-trailer", "last")])
        return reply

    async def sleep(self, request: Any, context: Any) -> Any:
        self.sleep_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.sleep_cancelled.set()
        raise AssertionError("unreachable")

    async def watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.watch_requests.append(request)
        pb2 = self.pb2
        for seq in range(request.after_sequence + 1, request.count + 1):
            yield pb2.WatchResponse(event=pb2.WatchEvent(sequence=seq, text=f"event {seq}"))
        if request.fail_code:
            await context.abort(CODES[request.fail_code], "failed after the events")
        if request.hang:
            self.watch_hanging.set()
            try:
                await asyncio.Event().wait()
            finally:
                self.watch_cancelled.set()

    async def upload(self, requests: AsyncIterator[Any], context: Any) -> Any:
        async for _ in requests:
            pass
        return self.pb2.Echo(method="Upload")

    def handler(self) -> grpc.GenericRpcHandler:
        pb2 = self.pb2
        echo_in = pb2.Echo.FromString
        echo_out = pb2.Echo.SerializeToString

        def unary(fn: Any, out: Any = echo_out) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=echo_in, response_serializer=out
            )

        methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            name: unary(self.echo(name))
            for name in (
                "GetItem",
                "GetBook",
                "GetFile",
                "Wild",
                "CreateItem",
                "CreateInner",
                "UpdateInner",
                "ReplaceItem",
                "GetThing",
                "CancelThing",
                "PurgeItem",
            )
        }
        methods["DeleteItem"] = unary(self.delete_item, empty_pb2.Empty.SerializeToString)
        methods["Fail"] = unary(self.fail)
        methods["Meta"] = unary(self.meta)
        methods["Sleep"] = unary(self.sleep)
        for name in ("Watch", "WatchDone"):
            methods[name] = grpc.unary_stream_rpc_method_handler(
                self.watch,
                request_deserializer=pb2.WatchRequest.FromString,
                response_serializer=pb2.WatchResponse.SerializeToString,
            )
        methods["Upload"] = grpc.stream_unary_rpc_method_handler(
            self.upload, request_deserializer=echo_in, response_serializer=echo_out
        )
        return grpc.method_handlers_generic_handler(SERVICE, methods)


@dataclass
class Upstream:
    address: str
    servicer: Servicer
    health: health.aio.HealthServicer


@pytest.fixture
async def upstream(api: CompiledApi) -> AsyncIterator[Upstream]:
    server = grpc.aio.server()
    servicer = Servicer(api.pb2)
    server.add_generic_rpc_handlers((servicer.handler(), *CompatServicer(api.compat).handlers()))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Upstream(f"127.0.0.1:{port}", servicer, health_servicer)
    finally:
        await server.stop(None)


@pytest.fixture
async def gateway(upstream: Upstream, api: CompiledApi) -> AsyncIterator[GatewayServer]:
    async with GatewayServer(
        upstream.address, port=0, descriptor_set=api.descriptor_set, heartbeat_seconds=0.5
    ) as server:
        yield server


@pytest.fixture
async def client(gateway: GatewayServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as c:
        yield c


@contextlib.asynccontextmanager
async def gateway_client(
    address: str, api: CompiledApi, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway (port 0, the test API) for `address`, with GatewayServer options."""
    async with (
        GatewayServer(address, port=0, descriptor_set=api.descriptor_set, **options) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=10) as client,
    ):
        yield client


def assert_status(resp: httpx.Response, http: int, code: int) -> dict[str, Any]:
    """The response is a google.rpc.Status JSON error with these codes."""
    assert resp.status_code == http, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    return body
