"""End to end: curl-shaped HTTP through the gateway to the real control plane.

A LocalMesh (embedded NATS, control plane, service replicas) on port 0, the gateway in
front of it on port 0, and httpx speaking plain REST/JSON to the gateway.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

pytest.importorskip("llama_mesh.launch.local")

from llama_mesh.launch.local import LocalMesh
from llama_mesh_gateway import GatewayServer

from mesh_workflows import (
    ApprovalWorkflow,
    EchoWorkflow,
    StoppableWorkflow,
    StreamingWorkflow,
)

NDJSON = {"accept": "application/x-ndjson"}


@dataclass
class Rest:
    mesh: LocalMesh
    http: httpx.AsyncClient


@pytest.fixture
async def rest() -> AsyncIterator[Rest]:
    services = {
        "echo": EchoWorkflow(),
        "stream": StreamingWorkflow(),
        "approval": ApprovalWorkflow(),
        "stoppable": StoppableWorkflow(),
    }
    async with (
        LocalMesh(services) as mesh,
        GatewayServer(mesh.address, port=0) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        yield Rest(mesh, http)


def sse_events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if fields:
            events.append(fields)
    return events


async def create_session(http: httpx.AsyncClient) -> dict[str, Any]:
    resp = await http.post("/v1/sessions", json={"labels": {"team": "gateway"}})
    assert resp.status_code == 200, resp.text
    session: dict[str, Any] = resp.json()
    return session


async def test_session_run_get_and_list(rest: Rest) -> None:
    http = rest.http
    session = await create_session(http)
    assert session["name"].startswith("sessions/")
    assert session["labels"] == {"team": "gateway"}
    assert session["overlapPolicy"] in ("OVERLAP_POLICY_UNSPECIFIED", "OVERLAP_POLICY_QUEUE")
    assert session["createTime"].endswith("Z")

    got = await http.get(f"/v1/{session['name']}")
    assert got.status_code == 200 and got.json()["name"] == session["name"]

    resp = await http.post(
        f"/v1/{session['name']}/tasks:run",
        json={"task": {"service": "echo", "input": {"arg1": "hi"}}, "requestId": "r1"},
    )
    assert resp.status_code == 200, resp.text
    task = resp.json()
    assert task["name"].startswith(session["name"] + "/tasks/")
    assert task["service"] == "echo"
    assert task["state"] == "TASK_STATE_SUCCEEDED"
    assert task["result"] == "hi_result"
    assert task["input"] == {"arg1": "hi"}
    assert task["attemptCount"] == 1
    assert task["createTime"] <= task["endTime"]

    got = await http.get(f"/v1/{task['name']}")
    assert got.status_code == 200, got.text
    assert got.json()["state"] == "TASK_STATE_SUCCEEDED"
    assert got.json()["result"] == "hi_result"

    listed = await http.get(
        f"/v1/{session['name']}/tasks", params={"states": "TASK_STATE_SUCCEEDED", "pageSize": 10}
    )
    assert listed.status_code == 200, listed.text
    assert [t["name"] for t in listed.json()["tasks"]] == [task["name"]]

    missing = await http.get(f"/v1/{session['name']}/tasks/nope")
    assert missing.status_code == 404
    assert missing.json()["code"] == 5
    bad = await http.post(f"/v1/{session['name']}/tasks", json={"service": "nope"})
    assert bad.status_code == 404, bad.text


async def test_stream_events_as_sse_and_ndjson_with_resume(rest: Rest) -> None:
    http = rest.http
    session = await create_session(http)
    resp = await http.post(
        f"/v1/{session['name']}/tasks", json={"service": "stream", "input": {"n": 3}}
    )
    assert resp.status_code == 200, resp.text
    task = resp.json()
    assert task["state"] in ("TASK_STATE_PENDING", "TASK_STATE_RUNNING")
    url = f"/v1/{task['name']}:streamEvents"

    sse = await http.get(url)
    assert sse.status_code == 200
    assert sse.headers["content-type"].startswith("text/event-stream")
    events = sse_events(sse.text)
    items = [json.loads(e["data"])["event"] for e in events]
    assert [i["type"] for i in items] == ["Progress"] * 3 + ["StopEvent"]
    assert [i["payload"]["n"] for i in items[:3]] == [0, 1, 2]
    # Integers stay integers (a Struct holds doubles), and each event says the state
    # the task is in after it.
    assert '"payload":{"n":1}' in sse.text and '"payload":3,' in sse.text, sse.text
    assert [i["state"] for i in items] == ["TASK_STATE_RUNNING"] * 3 + ["TASK_STATE_SUCCEEDED"]
    assert items[-1]["payload"] == 3
    got = await http.get(f"/v1/{task['name']}")
    assert '"result":3,' in got.text and got.json()["input"] == {"n": 3}, got.text
    assert [e["id"] for e in events] == [i["sequence"] for i in items]
    assert all(isinstance(i["sequence"], str) for i in items)  # int64 as a string
    assert items[-1]["task"] == task["name"]

    # Resume: an EventSource reconnects with Last-Event-ID.
    resumed = sse_events((await http.get(url, headers={"last-event-id": events[1]["id"]})).text)
    assert [e["id"] for e in resumed] == [e["id"] for e in events[2:]]

    nd = await http.get(url, headers=NDJSON, params={"afterSequence": events[0]["id"]})
    assert nd.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line)["result"]["event"] for line in nd.text.splitlines() if line]
    assert [line["sequence"] for line in lines] == [i["sequence"] for i in items[1:]]


async def test_send_event_into_a_waiting_task(rest: Rest) -> None:
    http = rest.http
    session = await create_session(http)
    task = (
        await http.post(
            f"/v1/{session['name']}/tasks",
            json={"service": "approval", "input": {"question": "Ship it?"}},
        )
    ).json()
    url = f"/v1/{task['name']}:streamEvents"
    async with http.stream("GET", url, headers=NDJSON) as stream:
        lines = stream.aiter_lines()
        async for line in lines:
            if not line:
                continue
            event = json.loads(line)["result"]["event"]
            if event["state"] == "TASK_STATE_WAITING_FOR_INPUT":
                break
        assert event["type"] == "InputRequiredEvent"
        assert event["payload"]["prefix"] == "Ship it?"

        wrong = await http.post(
            f"/v1/{task['name']}:sendEvent", json={"type": "NoSuchEvent", "payload": {}}
        )
        assert wrong.status_code == 400
        assert "NoSuchEvent" in wrong.json()["message"]

        sent = await http.post(
            f"/v1/{task['name']}:sendEvent",
            json={"type": "HumanResponseEvent", "payload": {"response": "yes"}},
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["task"]["name"] == task["name"]

        last = None
        async for line in lines:
            if line:
                last = json.loads(line)["result"]["event"]
        assert last is not None
        assert last["state"] == "TASK_STATE_SUCCEEDED"
        assert last["payload"] == {"answer": "yes"}

    again = await http.post(
        f"/v1/{task['name']}:sendEvent",
        json={"type": "HumanResponseEvent", "payload": {"response": "again"}},
    )
    assert again.status_code == 400  # FAILED_PRECONDITION
    assert again.json()["code"] == 9


async def test_cancel_a_running_task(rest: Rest) -> None:
    http = rest.http
    session = await create_session(http)
    task = (
        await http.post(
            f"/v1/{session['name']}/tasks",
            json={"service": "stoppable", "input": {"tag": "rest-cancel", "seconds": 60}},
        )
    ).json()
    async with http.stream("GET", f"/v1/{task['name']}:streamEvents") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: ") and "SlowStarted" in line:
                break
    resp = await http.post(f"/v1/{task['name']}:cancel", json={"reason": "changed my mind"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["alreadyFinished"] is False

    events = sse_events((await http.get(f"/v1/{task['name']}:streamEvents")).text)
    final = json.loads(events[-1]["data"])["event"]
    assert final["state"] == "TASK_STATE_CANCELLED"
    assert "changed my mind" in final["error"]["message"]

    got = (await http.get(f"/v1/{task['name']}")).json()
    assert got["state"] == "TASK_STATE_CANCELLED"
    assert got["error"]["code"] == 1
    again = await http.post(f"/v1/{task['name']}:cancel", json={})
    assert again.json()["alreadyFinished"] is True


async def test_a_long_id_is_invalid_argument_not_resource_exhausted(rest: Rest) -> None:
    """The control plane echoes a bad id in its message; the message is cut to 1 KiB so
    the grpc-message trailer never passes the 8 KiB a gRPC client accepts (which used to
    turn this 400 into a 429 through the gateway, RESOURCE_EXHAUSTED over gRPC)."""
    import grpc

    from llama_mesh.v1 import control_plane_pb2, control_plane_pb2_grpc

    long_id = "a" * 14_000
    resp = await rest.http.get(f"/v1/sessions/{long_id}")
    assert resp.status_code == 400, resp.text[:300]
    body = resp.json()
    assert body["code"] == 3
    assert body["message"].startswith("name 'aaa")
    assert body["message"].endswith("(truncated)")
    assert len(body["message"].encode()) <= 1024

    async with grpc.aio.insecure_channel(rest.mesh.address) as channel:
        stub = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetSession(control_plane_pb2.GetSessionRequest(name=f"sessions/{long_id}"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").endswith("(truncated)")
