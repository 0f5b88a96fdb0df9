"""A stream that stays quiet for long (a `run` waiting for a person, an event stream
between events) outlives the keepalive pings of the client's channel: the mesh's servers
accept them instead of ending the connection with GOAWAY "too_many_pings"."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llama_mesh.client._async import CHANNEL_OPTIONS
from llama_mesh.rpc import server

PING_OPTION = "grpc.http2.min_ping_interval_without_data_ms"


def test_the_client_pings_no_sooner_than_the_servers_accept() -> None:
    assert dict(CHANNEL_OPTIONS)["grpc.keepalive_time_ms"] >= server.MIN_PING_INTERVAL_MS
    assert dict(server.OPTIONS)[PING_OPTION] == server.MIN_PING_INTERVAL_MS


@pytest.mark.timeout(30)
@pytest.mark.parametrize("server_accepts", [True, False], ids=["mesh-server", "grpc-default"])
async def test_a_quiet_stream_outlives_keepalive_pings(
    monkeypatch: pytest.MonkeyPatch, server_accepts: bool
) -> None:
    """Both intervals scaled down 100 times (the client's stays 3x the server's minimum);
    without the server's option (grpc-default) the same stream dies, so the test can fail."""
    options = [(k, 100 if k == PING_OPTION else v) for k, v in server.OPTIONS]
    if not server_accepts:
        options = [(k, v) for k, v in options if k != PING_OPTION]
    monkeypatch.setattr(server, "OPTIONS", options)
    client_options = [
        *[(k, 300 if k == "grpc.keepalive_time_ms" else v) for k, v in CHANNEL_OPTIONS],
        ("grpc.http2.max_pings_without_data", 0),  # keep pinging however long it is quiet
    ]
    async with (
        server.serve([]) as (address, _),
        grpc.aio.insecure_channel(address, options=client_options) as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        # types-grpcio-health-checking declares HealthStub without its methods.
        watch = health.Watch(health_pb2.HealthCheckRequest())  # type: ignore[attr-defined]
        first = await anext(aiter(watch))
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        if server_accepts:
            with pytest.raises(TimeoutError):  # ~10 pings, and still no answer: open
                await asyncio.wait_for(anext(aiter(watch)), 3.0)
        else:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(anext(aiter(watch)), 10.0)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "ping" in (refused.value.details() or "").lower()
        watch.cancel()
