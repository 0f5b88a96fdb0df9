"""The generated OpenAPI document: its content, its freshness, and schemathesis against it.

schemathesis runs as its CLI, in a subprocess, against the real gateway and a real
grpc.aio upstream started by the test on port 0.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import message

from llama_mesh_gateway import GatewayServer
from llama_mesh_gateway.openapi import build_openapi
from llama_mesh_gateway.routes import Schema

from .conftest import ROOT, CompiledApi, Upstream, gateway_client

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def test_committed_document_is_fresh() -> None:
    schema = Schema.load()
    committed = json.loads((ROOT / "gateway" / "openapi.json").read_text())
    assert committed == build_openapi(schema, schema.routes()), (
        "gateway/openapi.json is stale: run 'make gen' and commit"
    )


def test_document_shape(api: CompiledApi) -> None:
    schema = Schema.load(api.descriptor_set)
    doc = build_openapi(schema, schema.routes())
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    op = paths["/v1/shelves/{shelf}/books/{book}"]["get"]
    assert op["operationId"] == "TestService_GetBook"
    assert op["description"] == "A multi-segment variable."
    names = {p["name"] for p in op["parameters"]}
    assert {"shelf", "book", "big", "inner.name", "inner.count", "optBig", "tags"} <= names
    assert "items" not in names and "labels" not in names  # repeated messages and maps
    assert paths["/v1/things/{thing}:cancel"]["post"]["requestBody"]["content"]
    assert "/v1/upload" not in paths  # client streaming has no REST form
    assert "/v1/alt/{id}/items" in paths  # additional binding
    assert op["responses"]["default"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/google.rpc.Status"
    }
    echo = doc["components"]["schemas"]["gwtest.v1.Echo"]
    assert echo["description"] == "Every kind of field."
    assert echo["properties"]["big"]["type"] == "string"
    assert echo["properties"]["method"]["readOnly"] is True
    assert echo["properties"]["when"] == {
        "type": "string",
        "format": "date-time",
        "description": "A Timestamp.",
    }
    watch = paths["/v1/streams/{stream}:watch"]["get"]["responses"]["200"]["content"]
    assert set(watch) == {"text/event-stream", "application/x-ndjson"}
    create_inner = paths["/v1/shelves/{shelf}/inners"]["post"]
    assert create_inner["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/gwtest.v1.Inner"
    }


async def test_served_document(client: httpx.AsyncClient, api: CompiledApi) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status_code == 200
    schema = Schema.load(api.descriptor_set)
    assert resp.json() == build_openapi(schema, schema.routes())


async def _schemathesis(url: str, *extra: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{url}/openapi.json",
        "--url",
        url,
        "--checks",
        CHECKS,
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        "15",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--seed",
        "1",
        "--no-color",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.timeout(300)
async def test_schemathesis_on_the_test_api(gateway: GatewayServer) -> None:
    code, out = await _schemathesis(
        gateway.url,
        # By design: Sleep waits for cancellation, Fail returns any code, Watch can hang.
        "--exclude-operation-id",
        "TestService_Sleep",
        "--exclude-operation-id",
        "TestService_Fail",
        "--exclude-operation-id",
        "TestService_Watch",
        "--exclude-operation-id",
        "TestService_WatchDone",
    )
    assert code == 0, out


class _DefaultsServicer:
    """An upstream for every llama_mesh.v1 method that answers with default messages."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        out: list[grpc.GenericRpcHandler] = []
        for f in self.schema.file_set.file:
            for s in f.service:
                full = f"{f.package}.{s.name}"
                desc = self.schema.pool.FindServiceByName(full)
                methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
                for m in desc.methods:
                    req = self.schema.message_class(m.input_type)
                    resp = self.schema.message_class(m.output_type)
                    if m.server_streaming:
                        methods[m.name] = grpc.unary_stream_rpc_method_handler(
                            self._stream(resp),
                            request_deserializer=req.FromString,
                            response_serializer=resp.SerializeToString,
                        )
                    elif not m.client_streaming:
                        methods[m.name] = grpc.unary_unary_rpc_method_handler(
                            self._unary(resp),
                            request_deserializer=req.FromString,
                            response_serializer=resp.SerializeToString,
                        )
                out.append(grpc.method_handlers_generic_handler(full, methods))
        return out

    @staticmethod
    def _unary(resp: type[message.Message]) -> Any:
        async def handler(request: Any, context: Any) -> message.Message:
            return resp()

        return handler

    @staticmethod
    def _stream(resp: type[message.Message]) -> Any:
        async def handler(request: Any, context: Any) -> AsyncIterator[message.Message]:
            yield resp()

        return handler


@pytest.mark.timeout(300)
async def test_schemathesis_on_the_product_api() -> None:
    """Every llama_mesh.v1 operation, against an upstream that answers defaults."""
    schema = Schema.load()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(_DefaultsServicer(schema).handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with GatewayServer(f"127.0.0.1:{port}", port=0) as gw:
            code, out = await _schemathesis(gw.url, "--exclude-path", "/healthz")
            assert code == 0, out
    finally:
        await server.stop(None)


async def test_openapi_paths_reach_their_routes(upstream: Upstream, api: CompiledApi) -> None:
    """Filling each documented path parameter gives a URL the gateway routes."""
    async with gateway_client(upstream.address, api) as client:
        doc = (await client.get("/openapi.json")).json()
        for path, ops in doc["paths"].items():
            if path == "/healthz":
                continue
            url = path
            for p in next(iter(ops.values())).get("parameters", []):
                if p["in"] == "path":
                    url = url.replace("{" + p["name"] + "}", "x")
            for verb in ops:
                if ops[verb]["operationId"] in ("TestService_Sleep", "TestService_Fail"):
                    continue
                kwargs: dict[str, Any] = {"json": {}} if verb in ("post", "put", "patch") else {}
                resp = await client.request(verb.upper(), url, **kwargs)
                assert resp.status_code == 200, (verb, url, resp.text)
