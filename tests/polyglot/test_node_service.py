"""A service written in TypeScript (clients/typescript/src/upper_service.ts) beside
Python services: it registers over gRPC, takes tasks through the Queue API (no NATS
client), reports what happens to them through the attempt RPCs, and Python clients
run tasks on it. Its failures are decided by the control plane exactly as a Python
service's are."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from google.rpc import status_pb2

from llama_mesh.config import RetryConfig, ServiceConfig
from llama_mesh.core.errors import InvalidArgumentError, TaskFailedError
from llama_mesh.core.tracebacks import find_debug_info
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2

from .conftest import JsonStream, spawn, stop
from mesh_workflows import FailingWorkflow
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


async def dead_letter(mesh: LocalMesh, service: str) -> resources_pb2.DeadLetter:
    """The last dead letter of `service`, from the MESH_DEAD stream."""
    assert mesh.control_plane is not None
    state = mesh.control_plane.state
    msg = await state.js.get_last_msg(
        state.topology.dead_letter_stream, state.topology.dead_letter_subject(service)
    )
    assert msg.data is not None
    return resources_pb2.Envelope.FromString(msg.data).dead_letter


@pytest.mark.timeout(90)
async def test_a_failing_node_task_is_retried_and_dead_lettered_as_a_python_one(
    node: str, ts_client: Path, nats: EmbeddedNats
) -> None:
    # The same service twice, in Python and in Node: every attempt raises Boom, which
    # both retry policies name as retryable, up to 3 attempts.
    retry = RetryConfig(
        max_attempts=3, initial_backoff=0.05, max_backoff=0.1, retryable_error_types=["Boom"]
    )
    python = ServiceConfig("fail-py", retry=retry)
    async with LocalMesh({"fail-py": (FailingWorkflow(), python)}, nats_url=nats.url) as mesh:
        argv = [
            node,
            str(ts_client / "fail_service.js"),
            mesh.address,
            *("--name", "fail-node", "--max-attempts", "3"),
            *("--initial-backoff-ms", "50", "--max-backoff-ms", "100"),
            *("--retryable-error-type", "Boom"),
        ]
        async with spawn(*argv) as service:
            assert (await service.next())["ready"] is True
            session = await mesh.client.create_session()
            seen = {}
            for name in ("fail-py", "fail-node"):
                handle = await session.create_task(name, message="disk on fire")
                with pytest.raises(TaskFailedError) as failed:
                    await handle.result()
                assert failed.value.error_type == "Boom"
                events = [
                    (e.type, e.state, e.attempt, e.error_type, e.error_message)
                    async for e in handle.events()
                ]
                seen[name] = (await handle.get(), events, await dead_letter(mesh, name))
            assert await stop(service) == 0

    (py_task, py_events, py_dead), (node_task, node_events, node_dead) = seen.values()
    boom = ("Boom", "Boom: disk on fire")
    assert (
        py_events
        == node_events
        == [
            ("llama_mesh.AttemptFailed", "PENDING", 1, *boom),
            ("llama_mesh.AttemptFailed", "PENDING", 2, *boom),
            ("StopEvent", "FAILED", 3, *boom),
        ]
    )
    for task in (py_task, node_task):
        assert task.state == resources_pb2.TASK_STATE_FAILED
        assert task.attempt_count == 3
    # The same google.rpc.Status, ErrorInfo and all; the Python one also carries the
    # workflow's traceback (the Queue API takes none from other languages).
    assert find_debug_info(py_task.error) is not None
    assert find_debug_info(node_task.error) is None
    py_error = status_pb2.Status()
    py_error.CopyFrom(py_task.error)
    del py_error.details[1:]
    assert py_error == node_task.error
    assert py_task.error.code == 2  # UNKNOWN
    # Both dead-lettered, after three deliveries, with the task in its final state.
    for dead, task in ((py_dead, py_task), (node_dead, node_task)):
        assert dead.delivery_count == 3
        assert dead.task.name == task.name
        assert dead.task.state == resources_pb2.TASK_STATE_FAILED
        assert dead.task.error == task.error


@pytest.mark.timeout(90)
async def test_a_node_replica_refuses_a_task_of_another_service(
    node: str, ts_client: Path, mesh: LocalMesh
) -> None:
    """An assignment on `tasks.upper` whose task is of another service (forged by an
    admin's raw Publish, or misrouted) is dropped unrun and unreported."""
    assert mesh.control_plane is not None
    state = mesh.control_plane.state
    async with spawn(*upper(node, ts_client, mesh), "--max-concurrency", "1") as service:
        assert (await service.next())["ready"] is True
        session = await mesh.client.create_session()
        # A task of `approval`, waiting for its answer: the target.
        target = await session.create_task("approval", question="ship it?")
        async for event in target.events():
            if event.state == "WAITING_FOR_INPUT":
                break
        forged = resources_pb2.Envelope(
            id="forged", task_assignment=resources_pb2.TaskAssignment(task=target.task)
        )
        ack = await state.js.publish(
            state.topology.task_subject("upper"), forged.SerializeToString()
        )
        # One slot: the forged message is dealt with before the next task starts.
        assert await session.run("upper", text="after") == "AFTER"
        task = await target.get()
        assert task.state == resources_pb2.TASK_STATE_WAITING_FOR_INPUT
        assert task.attempt_count == 1  # only approval's own replica ran it
        await target.send_event("HumanResponseEvent", response="yes")
        assert await target.result() == {"answer": "yes"}
        # Stopped, the replica has settled every delivery it took: the "after" task's
        # ack comes once its result is published, so after run() returned, not before.
        assert await stop(service) == 0
    info = await state.js.consumer_info(state.topology.task_stream, "svc_upper")
    assert info.ack_floor.stream_seq >= ack.seq  # dropped (acked), not left to redeliver
    assert info.num_ack_pending == 0 and info.num_redelivered == 0
