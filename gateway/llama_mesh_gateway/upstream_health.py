"""`GET /healthz`: the gateway asks its upstream's grpc.health.v1 Check."""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from starlette.types import Send

from llama_mesh_gateway import asgi_io

HEALTH_TIMEOUT_SECONDS = 5.0


async def send_health(channel: grpc.aio.Channel, upstream: str, send: Send, *, head: bool) -> None:
    """Answer `GET /healthz` (or HEAD) with the upstream's grpc.health.v1 status: 200
    when it is SERVING, 503 otherwise."""
    stub = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    body: dict[str, Any] = {"gateway": "SERVING", "upstream": upstream}
    try:
        resp = await stub(health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT_SECONDS)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    except grpc.aio.AioRpcError as e:
        status = "UNREACHABLE" if e.code() == grpc.StatusCode.UNAVAILABLE else "UNKNOWN"
        body["message"] = f"{e.code().name}: {e.details()}"
    body["upstreamStatus"] = status
    code = 200 if status == "SERVING" else 503
    payload = b"" if head else asgi_io.dumps(body)
    await asgi_io.send_body(
        send, code, {"content-type": asgi_io.JSON, "cache-control": "no-cache"}, payload
    )
