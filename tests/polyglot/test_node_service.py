"""A service written in TypeScript (clients/typescript/src/upper_service.ts) beside
Python services: it registers over gRPC, takes tasks through the Queue API (no NATS
client), reports through Publish, and Python clients run tasks on it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.launch.local import LocalMesh

from .conftest import JsonStream, spawn, stop
from processes import run


def upper(node: str, ts_client: Path, mesh: LocalMesh) -> list[str]:
    return [node, str(ts_client / "upper_service.js"), mesh.address]


async def replicas(mesh: LocalMesh, service: str) -> list[tuple[str, str]]:
    found = {s.name: s for s in await mesh.client.list_services()}
    return [(r.replica_id, r.runtime) for r in found[f"services/{service}"].replicas]


@pytest.mark.timeout(90)
async def test_node_service_runs_tasks_beside_python_services(
    node: str, ts_client: Path, mesh: LocalMesh
) -> None:
    async with spawn(*upper(node, ts_client, mesh)) as service:
        ready = await service.next()
        assert ready["ready"] is True
        assert ready["service"] == "services/upper"

        # It is registered like any service, with its runtime.
        assert await replicas(mesh, "upper") == [(ready["replica_id"], "node")]
        assert [runtime for _, runtime in await replicas(mesh, "echo")] == ["python"]
        status = await run(
            str(Path(sys.executable).parent / "llama-mesh"),
            *("status", "-c", mesh.address, "-o", "json"),
        )
        listed = {s["name"]: s for s in status.check().json()["services"]}
        assert [r["replica_id"] for r in listed["upper"]["replicas"]] == [ready["replica_id"]]
        assert "echo" in listed

        # A Python client runs tasks on it, concurrently, beside a Python service.
        session = await mesh.client.create_session()
        texts = [f"hello {i} from python" for i in range(8)]
        results = await asyncio.gather(
            *(session.run("upper", text=text) for text in texts),
            session.run("echo", arg1="hi"),
        )
        assert results == [*(t.upper() for t in texts), "hi_result"]

        # Its events stream like a Python service's.
        handle = await session.create_task("upper", text="abc")
        events = [e async for e in handle.events()]
        assert [(e.type, e.payload) for e in events] == [
            ("UpperStarted", {"length": 3}),
            ("StopEvent", "ABC"),
        ]
        assert events[-1].state == "SUCCEEDED"
        assert (await handle.get()).attempt_count == 1

        # The input schema it registered is enforced by the control plane.
        with pytest.raises(InvalidArgumentError, match="text"):
            await session.run("upper", wrong="field")

        # SIGTERM: it finishes, deregisters and exits 0.
        assert await stop(service) == 0
    assert await replicas(mesh, "upper") == []

    # Tasks wait in the queue while no replica runs; the next replica takes them.
    waiting = await session.create_task("upper", text="queued while away")
    async with spawn(*upper(node, ts_client, mesh)) as again:
        await again.next()
        assert await waiting.result() == "QUEUED WHILE AWAY"


@pytest.mark.timeout(90)
async def test_two_node_replicas_share_one_queue(
    node: str, ts_client: Path, mesh: LocalMesh
) -> None:
    argv = upper(node, ts_client, mesh)
    async with spawn(*argv) as first, spawn(*argv) as second:
        ready = [await first.next(), await second.next()]
        ids = sorted(r["replica_id"] for r in ready)
        assert sorted(i for i, _ in await replicas(mesh, "upper")) == ids

        session = await mesh.client.create_session()
        texts = [f"t{i}" for i in range(12)]
        handles = [await session.create_task("upper", text=t) for t in texts]
        assert [await h.result() for h in handles] == [t.upper() for t in texts]
        # Each task ran once: no replica took a task another one had.
        for h in handles:
            assert (await h.get()).attempt_count == 1

        await _stop_all(first, second)
    assert await replicas(mesh, "upper") == []


async def _stop_all(*services: JsonStream) -> None:
    codes = await asyncio.gather(*(stop(s) for s in services))
    assert list(codes) == [0] * len(services)
