"""Human in the loop, nested workflows, cancel, deadlines and per-session order."""

from __future__ import annotations

import asyncio
from typing import Any

import nats as nats_py
import pytest

from llama_mesh.client import AsyncClient, TaskHandle
from llama_mesh.config import ServiceConfig
from llama_mesh.control_plane import task_answers
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    TaskCancelledError,
    TaskDeadlineExceededError,
    UnavailableError,
)
from llama_mesh.core.lifecycle import accept_input
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.remote_journal import RemoteJournal
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2

from mesh_workflows import (
    CANCELLED_TAGS,
    AnnotatedOuterWorkflow,
    ApprovalWorkflow,
    CounterWorkflow,
    EchoWorkflow,
    FailingWorkflow,
    InnerWorkflow,
    ParentOfFailing,
    ParentOfStoppable,
    StoppableWorkflow,
    make_outer,
)

WAITING = resources_pb2.TASK_STATE_WAITING_FOR_INPUT
CANCELLED = resources_pb2.TASK_STATE_CANCELLED
FAILED = resources_pb2.TASK_STATE_FAILED
SUCCEEDED = resources_pb2.TASK_STATE_SUCCEEDED


async def test_llama_deploy_readme_nested_example(nats: EmbeddedNats) -> None:
    async with LocalMesh(
        {"inner": InnerWorkflow(), "outer": make_outer(), "outer2": AnnotatedOuterWorkflow()},
        nats_url=nats.url,
    ) as mesh:
        session = await mesh.client.create_session()
        assert await session.run("outer", arg1="hello_world") == "hello_world_result_result"
        assert await session.run("outer2", arg1="hi") == "hi_result_annotated"
        tasks = {t.service: t for t in await session.list_tasks(service="outer")}
        children = await session.list_tasks(service="inner")
        assert len(children) == 2  # the child ran in the same session
        assert {c.parent_task for c in children} >= {tasks["outer"].name}


async def test_nested_example_runs_in_process_unchanged() -> None:
    # The same workflow object, outside the mesh, runs its inner workflow in-process.
    assert await make_outer().run(arg1="hello_world") == "hello_world_result_result"


async def test_child_failure_reaches_parent_typed(nats: EmbeddedNats) -> None:
    async with LocalMesh(
        {"fail": FailingWorkflow(), "parent": ParentOfFailing()}, nats_url=nats.url
    ) as mesh:
        session = await mesh.client.create_session()
        result = await session.run("parent")
        assert result["child_error"] == "Boom"
        assert "child broke" in result["message"]


async def test_human_in_the_loop(nats: EmbeddedNats) -> None:
    async with LocalMesh({"approval": ApprovalWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task("approval", question="Ship it?")
        async for event in handle.events():
            if event.type == "InputRequiredEvent":
                break
        assert event.state == "WAITING_FOR_INPUT"
        assert event.payload["prefix"] == "Ship it?"
        task = await handle.get()
        assert task.state == WAITING
        assert task.input_request.event_type == "InputRequiredEvent"
        assert task.input_request.sequence == event.sequence
        assert [t.name for t in await mesh.client.inbox()] == [handle.name]

        with pytest.raises(InvalidArgumentError, match="does not accept events of type"):
            await handle.send_event("NoSuchEvent", response="x")
        assert (await handle.get()).state == WAITING  # nothing was lost

        await handle.send_event("HumanResponseEvent", response="yes")
        assert await handle.result() == {"answer": "yes"}
        assert await mesh.client.inbox() == []
        with pytest.raises(FailedPreconditionError, match="not waiting for input"):
            await handle.send_event("HumanResponseEvent", response="again")


async def test_human_in_the_loop_across_control_plane_replicas(nats: EmbeddedNats) -> None:
    async with (
        LocalMesh({"approval": ApprovalWorkflow()}, nats_url=nats.url) as mesh,
        ControlPlaneServer.start([nats.url]) as second,
        AsyncClient(second.address) as other,
    ):
        session = await mesh.client.create_session()
        handle = await session.create_task("approval")
        async for event in handle.events():  # stream from the first replica
            if event.state == "WAITING_FOR_INPUT":
                break
        await other.task(handle.name).send_event("HumanResponseEvent", response="via 2")
        events = [e async for e in handle.events(after_sequence=event.sequence)]
        assert events[-1].payload == {"answer": "via 2"}
        assert await other.task(handle.name).result() == {"answer": "via 2"}


async def test_an_answer_whose_record_change_failed_is_taken_once_when_retried(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fault at the exact point: the answer is stored, then recording that the task
    # runs again fails (NATS going away). The client retries the UNAVAILABLE call; the
    # retry must find its answer stored, not lose it or store a second one.
    failures: list[str] = []

    def record_fails_once(task: resources_pb2.Task) -> None:
        if not failures:
            failures.append(task.name)
            raise UnavailableError("the store went away (injected)")
        accept_input(task)

    monkeypatch.setattr(task_answers, "accept_input", record_fails_once)
    async with LocalMesh({"approval": ApprovalWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task("approval", question="Ship it?")
        async for event in handle.events():
            if event.type == "InputRequiredEvent":
                break
        await handle.send_event("HumanResponseEvent", response="yes")
        assert failures == [handle.name]
        assert await handle.result() == {"answer": "yes"}
        nc = await nats_py.connect(nats.url)
        try:
            stream = await nc.jetstream().stream_info(
                mesh.topology.event_stream,
                subjects_filter=mesh.topology.input_subject(TaskName.parse(handle.name).task_id),
            )
        finally:
            await nc.close()
        assert stream.state.subjects is not None
        assert list(stream.state.subjects.values()) == [1]  # stored once


async def test_two_answers_to_one_question_one_is_taken(nats: EmbeddedNats) -> None:
    async with (
        LocalMesh({"approval": ApprovalWorkflow()}, nats_url=nats.url) as mesh,
        ControlPlaneServer.start([nats.url]) as second,
        AsyncClient(second.address) as other,
    ):
        session = await mesh.client.create_session()
        handle = await session.create_task("approval")
        async for event in handle.events():
            if event.type == "InputRequiredEvent":
                break
        sent = await asyncio.gather(
            handle.send_event("HumanResponseEvent", response="one"),
            other.task(handle.name).send_event("HumanResponseEvent", response="two"),
            return_exceptions=True,
        )
        taken = [
            a
            for a, r in zip(["one", "two"], sent, strict=True)
            if isinstance(r, resources_pb2.Task)
        ]
        refused = [r for r in sent if isinstance(r, BaseException)]
        assert len(taken) == 1, sent
        assert len(refused) == 1 and isinstance(refused[0], FailedPreconditionError), sent
        assert await handle.result() == {"answer": taken[0]}


async def test_cancel_running_task_stops_the_workflow(nats: EmbeddedNats) -> None:
    async with LocalMesh({"stoppable": StoppableWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task("stoppable", tag="cancel-me")
        async for event in handle.events():
            if event.type == "SlowStarted":
                break
        assert await handle.cancel("changed my mind") is True
        with pytest.raises(TaskCancelledError, match="changed my mind"):
            await handle.result()
        assert (await handle.get()).state == CANCELLED
        assert "cancel-me" in CANCELLED_TAGS
        # Cancelling a finished task changes nothing, and says so.
        assert await handle.cancel() is False
        assert (await handle.get()).state == CANCELLED


async def test_a_cancel_swallowed_by_a_nats_call_still_cancels(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nats-py catches CancelledError while it flushes a publish (Client._flush_pending):
    # a cancel signal that arrives then is lost to the await that was interrupted. Here
    # it arrives exactly there: while the replica records that the task waits for input.
    original = RemoteJournal.record  # a replica's journal

    async def record(
        self: RemoteJournal, name: TaskName, event: resources_pb2.TaskEvent, **kwargs: Any
    ) -> resources_pb2.Task:
        if event.state == WAITING and kwargs.get("replica_id"):
            this = asyncio.current_task()
            assert this is not None
            try:
                await mesh.client.task(str(name)).cancel("cancelled mid-publish")
                if not this.cancelling():
                    await asyncio.get_running_loop().create_future()  # the replica cancels it
            except asyncio.CancelledError:
                pass  # as nats-py does
        return await original(self, name, event, **kwargs)

    monkeypatch.setattr(RemoteJournal, "record", record)
    async with LocalMesh({"approval": ApprovalWorkflow()}, nats_url=nats.url) as mesh:
        handle = await (await mesh.client.create_session()).create_task("approval")
        with pytest.raises(TaskCancelledError, match="cancelled mid-publish"):
            async with asyncio.timeout(30):
                await handle.result()


async def test_cancel_pending_task(nats: EmbeddedNats) -> None:
    config = ServiceConfig("stoppable", max_concurrency=1)
    async with LocalMesh({"stoppable": (StoppableWorkflow(), config)}, nats_url=nats.url) as mesh:
        busy = await mesh.client.create_session()
        first = await busy.create_task("stoppable", tag="busy")
        async for event in first.events():
            if event.type == "SlowStarted":
                break
        queued = await (await mesh.client.create_session()).create_task("stoppable", tag="q")
        assert (await queued.get()).state == resources_pb2.TASK_STATE_PENDING
        assert await queued.cancel() is True
        assert (await queued.get()).state == CANCELLED
        await first.cancel()
        with pytest.raises(TaskCancelledError):
            await first.result()
        assert "q" not in CANCELLED_TAGS  # it never ran


async def test_cancel_nested_parent_cancels_child(nats: EmbeddedNats) -> None:
    async with LocalMesh(
        {"stoppable": StoppableWorkflow(), "parent": ParentOfStoppable()}, nats_url=nats.url
    ) as mesh:
        session = await mesh.client.create_session()
        parent = await session.create_task("parent", tag="nest")
        child = await _child_started(parent)
        await parent.cancel()
        with pytest.raises(TaskCancelledError):
            await parent.result()
        with pytest.raises(TaskCancelledError):
            await child.result()
        assert (await child.get()).parent_task == parent.name
        assert {"nest", "parent:nest"} <= CANCELLED_TAGS


async def _child_started(parent: TaskHandle) -> TaskHandle:
    """The parent's child task, once its workflow has started."""
    async for event in parent.events():
        if event.type == "llama_mesh.ChildTaskCreated":
            child = parent.client.task(event.payload["task"])
            async for child_event in child.events():
                if child_event.type == "SlowStarted":
                    return child
    raise AssertionError("the parent finished without starting a child")


async def test_deadline_stops_the_workflow(nats: EmbeddedNats) -> None:
    async with LocalMesh({"stoppable": StoppableWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task("stoppable", tag="deadline", seconds=30, timeout=1.0)
        with pytest.raises(TaskDeadlineExceededError):
            await handle.result()
        task = await handle.get()
        assert task.state == FAILED
        assert task.error.code == 4  # DEADLINE_EXCEEDED
        assert "deadline" in CANCELLED_TAGS


async def test_concurrent_runs_in_one_session_are_serialized(nats: EmbeddedNats) -> None:
    config = ServiceConfig("counter", max_concurrency=8)
    workflow = CounterWorkflow()
    async with LocalMesh(nats_url=nats.url) as mesh:
        await mesh.add_service(workflow, config)
        await mesh.add_service(workflow, config)
        session = await mesh.client.create_session()
        n = 20
        counts = await asyncio.gather(*(session.run("counter") for _ in range(n)))
        assert sorted(counts) == list(range(1, n + 1))
        assert await session.run("counter") == n + 1


async def test_reject_overlap_policy(nats: EmbeddedNats) -> None:
    async with LocalMesh(
        {"stoppable": StoppableWorkflow(), "echo": EchoWorkflow()}, nats_url=nats.url
    ) as mesh:
        session = await mesh.client.create_session(reject_overlap=True)
        first = await session.create_task("stoppable", tag="r1")
        with pytest.raises(FailedPreconditionError, match="rejects overlapping tasks"):
            await session.create_task("stoppable", tag="r2")
        assert await session.run("echo", arg1="other service") == "other service_result"
        await first.cancel()
