"""Headers <-> metadata, deadlines, client disconnects, CORS, health and the CLI entry."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx
import pytest
from grpc_health.v1 import health_pb2

from llama_mesh_gateway import GatewayServer, create_app, serve
from llama_mesh_gateway.metadata import parse_grpc_timeout

from .conftest import CompiledApi, Upstream, assert_status, gateway_client


async def test_headers_to_metadata_and_back(client: httpx.AsyncClient) -> None:
    resp = await client.get(
        "/v1/meta",
        headers={
            "authorization": "Bearer t0k3n",
            "grpc-metadata-tenant": "acme",
            "grpc-metadata-trace-bin": base64.b64encode(b"\x01\x02").decode(),
            "x-forwarded-for": "203.0.113.7",
            "cookie": "not=forwarded",
        },
    )
    assert resp.status_code == 200, resp.text
    labels = resp.json()["labels"]
    assert labels["authorization"] == "Bearer t0k3n"
    assert labels["tenant"] == "acme"
    assert labels["trace-bin"] == "b64:" + base64.b64encode(b"\x01\x02").decode()
    assert labels["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert labels["x-forwarded-host"].startswith("127.0.0.1:")
    assert "cookie" not in labels
    assert resp.json()["ratio"] == -1.0  # no deadline without Grpc-Timeout
    assert resp.headers["grpc-metadata-x-initial"] == "first"
    assert resp.headers["grpc-metadata-x-bin-bin"] == base64.b64encode(b"\x00\x01").decode()
    assert resp.headers["grpc-trailer-x-trailer"] == "last"


async def test_grpc_timeout_sets_the_deadline(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/meta", headers={"grpc-timeout": "30S"})
    assert 25 < resp.json()["ratio"] <= 30
    resp = await client.get("/v1/sleep", headers={"grpc-timeout": "50m"})
    assert_status(resp, 504, 4)
    resp = await client.get("/v1/meta", headers={"grpc-timeout": "soon"})
    body = assert_status(resp, 400, 3)
    assert "Grpc-Timeout" in body["message"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1H", 3600.0), ("2M", 120.0), ("3S", 3.0), ("4m", 0.004), ("5u", 5e-6), ("6n", 6e-9)],
)
def test_grpc_timeout_units(value: str, seconds: float) -> None:
    assert parse_grpc_timeout(value) == pytest.approx(seconds)


async def test_bad_metadata_headers(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/meta", headers={"grpc-metadata-x-bin": "***"})
    assert_status(resp, 400, 3)
    resp = await client.get("/v1/meta", headers={"grpc-metadata-grpc-status": "0"})
    assert_status(resp, 400, 3)


async def test_unary_call_is_cancelled_when_the_client_leaves(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    request = asyncio.create_task(client.get("/v1/sleep"))
    await asyncio.wait_for(upstream.servicer.sleep_started.wait(), 5)
    request.cancel()  # closes the HTTP connection
    await asyncio.gather(request, return_exceptions=True)
    await asyncio.wait_for(upstream.servicer.sleep_cancelled.wait(), 5)


async def test_cors(upstream: Upstream, api: CompiledApi) -> None:
    async with gateway_client(
        upstream.address, api, cors_origins=["https://app.example"]
    ) as client:
        pre = await client.options(
            "/v1/items",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type, authorization",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in pre.headers["access-control-allow-methods"]
        resp = await client.get("/v1/items/x", headers={"origin": "https://app.example"})
        assert resp.headers["access-control-allow-origin"] == "https://app.example"
        other = await client.get("/v1/items/x", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_no_cors_by_default(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/items/x", headers={"origin": "https://app.example"})
    assert "access-control-allow-origin" not in resp.headers


async def test_health_reports_the_upstream(client: httpx.AsyncClient, upstream: Upstream) -> None:
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {
        "gateway": "SERVING",
        "upstream": upstream.address,
        "upstreamStatus": "SERVING",
    }
    await upstream.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    resp = await client.get("/healthz")
    assert resp.status_code == 503
    assert resp.json()["upstreamStatus"] == "NOT_SERVING"


async def test_health_when_the_upstream_is_gone(api: CompiledApi) -> None:
    async with gateway_client("127.0.0.1:1", api) as client:
        resp = await client.get("/healthz")
        assert resp.status_code == 503
        assert resp.json()["upstreamStatus"] == "UNREACHABLE"


async def test_asgi_app_without_lifespan(upstream: Upstream, api: CompiledApi) -> None:
    """Embedded in another ASGI server that runs no lifespan, the channel opens lazily."""
    app = create_app(upstream.address, descriptor_set=api.descriptor_set)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw"
        ) as client:
            resp = await client.get("/v1/items/asgi")
            assert resp.json()["name"] == "asgi"
    finally:
        await app.aclose()


async def test_services_filter(upstream: Upstream, api: CompiledApi) -> None:
    app = create_app(upstream.address, descriptor_set=api.descriptor_set, services=["Other"])
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw"
        ) as client:
            assert_status(await client.get("/v1/items/x"), 404, 5)
    finally:
        await app.aclose()


async def test_serve_until_cancelled(upstream: Upstream, api: CompiledApi, tmp_path: Path) -> None:
    """serve() is what the CLI runs: it binds, reports readiness, serves until cancelled."""
    ready: asyncio.Future[GatewayServer] = asyncio.get_running_loop().create_future()
    descriptor = tmp_path / "set.binpb"
    descriptor.write_bytes(api.descriptor_set)
    task = asyncio.create_task(
        serve(
            upstream.address, "127.0.0.1", 0, descriptor_set=descriptor, on_ready=ready.set_result
        )
    )
    try:
        server = await asyncio.wait_for(ready, 10)
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            assert (await client.get("/v1/items/cli")).json()["name"] == "cli"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
