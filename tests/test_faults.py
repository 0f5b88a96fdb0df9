"""Faults at the control plane, injected at the exact point: a store that is full, a
crash between a create's write and its publish, a deadline that passes while a
replica runs the task (issue 12, items 5, 7 and 9)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from fault_workflows import RUNS, AppendWorkflow
from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent

from llama_mesh.core.errors import MeshError, ResourceExhaustedError, TaskDeadlineExceededError
from llama_mesh.core.failpoints import FailpointCrash, armed, crash
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2

from mesh_workflows import EchoWorkflow


@pytest.fixture
async def tiny_nats(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A nats-server whose JetStream may store 8 MB in all."""
    config = tmp_path / "tiny.conf"
    config.write_text("jetstream { max_file_store: 8MB }\n")
    async with EmbeddedNats.start(tmp_path / "nats", extra_args=("-c", str(config))) as server:
        yield server


async def _fill(url: str) -> None:
    """Fill the store with a stream of the test's own until JetStream refuses more."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="BALLAST", subjects=["ballast"])
        with pytest.raises(nats.js.errors.APIError) as full:
            for _ in range(1000):
                await js.publish("ballast", b"x" * 256_000)
        assert full.value.err_code == 10023  # insufficient resources
    finally:
        await nc.close()


async def test_a_full_store_is_resource_exhausted_naming_what_is_full(
    tiny_nats: EmbeddedNats,
) -> None:
    async with LocalMesh({"echo": EchoWorkflow()}, nats_url=tiny_nats.url) as mesh:
        session = await mesh.client.create_session()
        assert await session.run("echo", arg1="a") == "a_result"
        await _fill(tiny_nats.url)
        full = "the NATS server's JetStream storage is full (insufficient resources) while "
        with pytest.raises(ResourceExhaustedError) as raised:
            await session.create_task("echo", arg1="b")
        assert raised.value.message.startswith(full + "indexing task sessions/")
        with pytest.raises(ResourceExhaustedError) as raised:
            await mesh.client.create_session()
        assert raised.value.message.startswith(full + "indexing session ")


async def test_a_create_that_crashed_before_its_publish_is_queued_by_its_retry(
    nats: EmbeddedNats,
) -> None:
    async with LocalMesh({"echo": EchoWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        request = cp.CreateTaskRequest(
            parent=session.name,
            task=resources_pb2.Task(service="echo"),
            request_id="create-once",
        )
        request.task.input.update({"arg1": "hi"})
        control_plane = mesh.control_plane
        assert control_plane is not None
        with armed("task_creation.recorded", crash), pytest.raises(MeshError):
            # The record is written; the process "dies" before the publish.
            await mesh.client.call(mesh.client.stub.CreateTask, request)
        [stranded] = await session.list_tasks()
        assert stranded.state == resources_pb2.TASK_STATE_PENDING
        # The retry a client makes after a lost call: same request_id, same task.
        response = await mesh.client.call(mesh.client.stub.CreateTask, request)
        assert response.task.name == stranded.name
        assert await mesh.client.task(stranded.name).result() == "hi_result"
        # A third call finds it finished and queues nothing more.
        again = await mesh.client.call(mesh.client.stub.CreateTask, request)
        assert again.task.state == resources_pb2.TASK_STATE_SUCCEEDED
        [task] = await session.list_tasks()
        assert task.attempt_count == 1


class Stubborn(Workflow):
    """Stops only after `grace` seconds once told to (cleanup it must finish)."""

    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.sleep(float(ev.get("grace", 1.0))))
            raise
        return StopEvent(result="done")


async def test_run_task_past_its_deadline_is_a_typed_deadline_error(nats: EmbeddedNats) -> None:
    # The wait for the result ends at the deadline; the replica records the failure
    # only after its workflow stopped, a second later. The call must wait for that
    # record, not return the task still RUNNING.
    async with LocalMesh({"stubborn": Stubborn()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with pytest.raises(TaskDeadlineExceededError) as raised:
            await session.run("stubborn", grace=1.0, timeout=0.5)
        assert raised.value.task.state == resources_pb2.TASK_STATE_FAILED
        assert "deadline" in raised.value.message


def test_failpoint_crash_is_an_exception_of_its_own() -> None:
    with armed("x", crash), pytest.raises(FailpointCrash):
        from llama_mesh.core.failpoints import failpoint

        failpoint("x")


@pytest.mark.timeout(120)
async def test_a_full_store_runs_no_workflow_until_it_has_room(tiny_nats: EmbeddedNats) -> None:
    # Before, the RUNNING write failed after the workflow had started, the task was
    # handed back without counting an attempt, and it ran again every ~1.2 s.
    async with LocalMesh({"append": AppendWorkflow()}, nats_url=tiny_nats.url) as mesh:
        [runtime] = mesh.services["append"]
        session = await mesh.client.create_session()
        runtime.pause()
        handle = await session.create_task("append", item="x")
        RUNS.clear()
        await _fill(tiny_nats.url)
        handed_back = asyncio.Event()
        with armed("attempt.handed_back", handed_back.set):
            await runtime.resume()
            await handed_back.wait()
        assert RUNS == []  # it could not record RUNNING: the workflow did not run
        nc = await nats.connect(tiny_nats.url)
        try:
            await nc.jetstream().delete_stream("BALLAST")  # room again
        finally:
            await nc.close()
        assert await handle.result() == ["x"]
        assert RUNS == ["x"]
        assert (await handle.get()).attempt_count == 1
