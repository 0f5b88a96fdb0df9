"""Server streaming as SSE and NDJSON: ids, resume, errors, heartbeats, cancellation."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from llama_mesh_gateway import GatewayServer

from .conftest import CompiledApi, Upstream, assert_status, gateway_client

NDJSON = {"accept": "application/x-ndjson"}


def parse_sse(text: str) -> list[dict[str, Any]]:
    """SSE events as dicts of their fields (comments kept under ':')."""
    events: list[dict[str, Any]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            key, _, value = line.partition(":")
            event.setdefault(key, []).append(value.removeprefix(" "))
        events.append({k: "\n".join(v) for k, v in event.items()})
    return events


async def test_sse_with_ids(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/streams/s1:watch", params={"count": "3"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["cache-control"] == "no-cache"
    events = parse_sse(resp.text)
    assert [e["id"] for e in events] == ["1", "2", "3"]
    assert [json.loads(e["data"]) for e in events] == [
        {"event": {"sequence": str(i), "text": f"event {i}"}} for i in (1, 2, 3)
    ]


async def test_sse_resumes_from_last_event_id(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    resp = await client.get(
        "/v1/streams/s1:watch",
        params={"count": "5", "afterSequence": "1"},
        headers={"last-event-id": "3"},  # wins over the query: EventSource resends the URL
    )
    assert [e["id"] for e in parse_sse(resp.text)] == ["4", "5"]
    assert upstream.servicer.watch_requests[-1].after_sequence == 3
    bad = await client.get("/v1/streams/s1:watch", headers={"last-event-id": "abc"})
    assert_status(bad, 400, 3)


async def test_ndjson(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/streams/s1:watch", params={"count": "2"}, headers=NDJSON)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in resp.text.splitlines() if line]
    assert lines == [
        {"result": {"event": {"sequence": str(i), "text": f"event {i}"}}} for i in (1, 2)
    ]


async def test_ndjson_resume_with_query(client: httpx.AsyncClient) -> None:
    resp = await client.get(
        "/v1/streams/s1:watch", params={"count": "4", "after_sequence": "2"}, headers=NDJSON
    )
    seqs = [json.loads(x)["result"]["event"]["sequence"] for x in resp.text.splitlines() if x]
    assert seqs == ["3", "4"]


async def test_error_mid_stream_is_the_final_item(client: httpx.AsyncClient) -> None:
    params = {"count": "2", "failCode": "10"}  # ABORTED after two events
    resp = await client.get("/v1/streams/s1:watch", params=params)
    assert resp.status_code == 200
    events = parse_sse(resp.text)
    assert [e.get("id") for e in events] == ["1", "2", None]
    assert events[-1]["event"] == "error"
    assert json.loads(events[-1]["data"]) == {
        "code": 10,
        "message": "failed after the events",
        "details": [],
    }
    resp = await client.get("/v1/streams/s1:watch", params=params, headers=NDJSON)
    lines = [json.loads(x) for x in resp.text.splitlines() if x]
    assert lines[-1] == {"error": {"code": 10, "message": "failed after the events", "details": []}}
    assert len(lines) == 3


async def test_error_before_any_item_gets_its_http_status(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/streams/s1:watch", params={"failCode": "5"})
    body = assert_status(resp, 404, 5)
    assert body["message"] == "failed after the events"


async def test_heartbeats_and_cancel_on_disconnect(upstream: Upstream, api: CompiledApi) -> None:
    async with gateway_client(upstream.address, api, heartbeat_seconds=0.05) as client:
        params = {"count": "1", "hang": "true"}
        async with client.stream("GET", "/v1/streams/s1:watch", params=params) as resp:
            assert resp.status_code == 200
            seen = ""
            async for chunk in resp.aiter_text():
                seen += chunk
                if seen.count(": keep-alive") >= 2:
                    break
            assert seen.startswith("id: 1\n")
        # The client left: the upstream call is cancelled.
        await asyncio.wait_for(upstream.servicer.watch_cancelled.wait(), 5)


async def test_ndjson_heartbeats_are_empty_lines(upstream: Upstream, api: CompiledApi) -> None:
    async with gateway_client(upstream.address, api, heartbeat_seconds=0.05) as client:
        params = {"count": "0", "hang": "true"}
        async with client.stream(
            "GET", "/v1/streams/s1:watch", params=params, headers=NDJSON
        ) as resp:
            # No item yet: the headers come after one heartbeat interval anyway.
            assert resp.status_code == 200
            seen = b""
            async for chunk in resp.aiter_bytes():
                seen += chunk
                if len(seen) >= 2:
                    break
            assert set(seen) == {ord("\n")}
        await asyncio.wait_for(upstream.servicer.watch_cancelled.wait(), 5)


async def test_stop_ends_open_streams(upstream: Upstream, api: CompiledApi) -> None:
    gw = GatewayServer(upstream.address, port=0, descriptor_set=api.descriptor_set)
    await gw.start()
    try:
        async with (
            httpx.AsyncClient(base_url=gw.url, timeout=10) as client,
            client.stream(
                "GET", "/v1/streams/s1:watch", params={"count": "1", "hang": "true"}
            ) as resp,
        ):
            lines = resp.aiter_lines()
            assert await anext(lines) == "id: 1"
            await upstream.servicer.watch_hanging.wait()
            stopping = asyncio.create_task(gw.stop())
            rest = [line async for line in lines]
            await stopping
            assert "event: error" in rest
    finally:
        await gw.stop()
    await asyncio.wait_for(upstream.servicer.watch_cancelled.wait(), 5)
