"""The mesh end to end: real nats-server, real gRPC, real Workflows."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time

import grpc
import pytest

from llama_mesh.client import AsyncClient, Client
from llama_mesh.config import RetryConfig, ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    TaskFailedError,
)
from llama_mesh.core.status import error_type
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2, service_pb2, service_pb2_grpc
from llama_mesh.worker.runtime import ServiceRuntime

from mesh_workflows import (
    ApprovalWorkflow,
    CounterWorkflow,
    EchoWorkflow,
    FailingWorkflow,
    FlakyWorkflow,
    SlowWorkflow,
    StreamingWorkflow,
    TypedWorkflow,
)
from paused_echo import PausedEcho
from processes import component

SUCCEEDED = resources_pb2.TASK_STATE_SUCCEEDED
FAILED = resources_pb2.TASK_STATE_FAILED


async def test_echo_returns_the_workflow_result(nats: EmbeddedNats) -> None:
    async with LocalMesh({"echo": EchoWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        assert await session.run("echo", arg1="hello") == "hello_result"
        [task] = await session.list_tasks()
        assert task.state == SUCCEEDED
        assert task.attempt_count == 1
        assert task.HasField("end_time")


async def test_sync_client_runs_a_task(nats: EmbeddedNats) -> None:
    async with LocalMesh({"echo": EchoWorkflow()}, nats_url=nats.url) as mesh:

        def use_sync_client() -> object:
            with Client(mesh.address) as client:
                session = client.create_session()
                return session.run("echo", arg1="sync")

        assert await asyncio.to_thread(use_sync_client) == "sync_result"


@pytest.mark.timeout(60)
async def test_sync_client_streams_events_live_and_finds_a_task_by_name(
    nats: EmbeddedNats,
) -> None:
    async with LocalMesh({"approval": ApprovalWorkflow()}, nats_url=nats.url) as mesh:

        def use_sync_client() -> tuple[list[str], object, object]:
            with Client(mesh.address) as client:
                task = client.create_session().create_task("approval", question="Ship it?")
                seen = []
                # The task waits for an answer: only a live stream shows it waiting.
                for event in task.events():
                    seen.append(event.state)
                    if event.state == "WAITING_FOR_INPUT":
                        break
                task.send_event("HumanResponseEvent", response="yes")
                again = client.task(task.name)  # by name, as another program would
                return seen, again.result(), again.get().state

        seen, result, state = await asyncio.to_thread(use_sync_client)
        assert seen == ["WAITING_FOR_INPUT"]
        assert result == {"answer": "yes"}
        assert state == resources_pb2.TASK_STATE_SUCCEEDED


async def test_session_state_carries_across_runs_and_replicas(nats: EmbeddedNats) -> None:
    workflow = CounterWorkflow()
    async with LocalMesh(nats_url=nats.url) as mesh:
        first = await mesh.add_service(workflow, ServiceConfig("counter"))
        second = await mesh.add_service(workflow, ServiceConfig("counter"))
        session = await mesh.client.create_session()
        other = await mesh.client.create_session()
        counts = []
        # The Service API steers each run to one replica: pause one, resume the other.
        for active, idle in ((first, second), (second, first), (first, second)):
            async with grpc.aio.insecure_channel(idle.address) as channel:
                paused = await service_pb2_grpc.ServiceAPIStub(channel).PauseService(
                    service_pb2.PauseServiceRequest()
                )
                assert paused.replica.state == resources_pb2.REPLICA_STATE_PAUSED
            async with grpc.aio.insecure_channel(active.address) as channel:
                await service_pb2_grpc.ServiceAPIStub(channel).ResumeService(
                    service_pb2.ResumeServiceRequest()
                )
            handle = await session.create_task("counter")
            counts.append(await handle.result())
            assert (await handle.get()).replica_id == active.replica_id
        assert counts == [1, 2, 3]
        assert await other.run("counter") == 1  # sessions do not share state

        # Deleting a session deletes its tasks and its saved state.
        await session.delete()
        again = await mesh.client.create_session(session.id)
        assert await again.run("counter") == 1
        assert len(await again.list_tasks()) == 1


async def test_events_stream_in_order_then_result_and_resume(nats: EmbeddedNats) -> None:
    async with LocalMesh({"stream": StreamingWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task("stream", n=6)
        events = [e async for e in handle.events()]
        assert [e.type for e in events] == ["Progress"] * 6 + ["StopEvent"]
        assert all(e.task == handle.name for e in events)
        assert [e.payload["n"] for e in events[:-1]] == list(range(6))
        assert events[-1].state == "SUCCEEDED" and events[-1].payload == 6
        sequences = [e.sequence for e in events]
        assert sequences == sorted(set(sequences))

        # A client that stops after k events and resumes from the k-th gets the rest.
        k = 3
        first_part = []
        async for event in handle.events():
            first_part.append(event)
            if len(first_part) == k:
                break
        rest = [e async for e in handle.events(after_sequence=first_part[-1].sequence)]
        assert [e.sequence for e in first_part + rest] == sequences


async def test_a_stream_opened_as_the_task_finishes_still_gets_every_event(
    paused_echo: PausedEcho,
) -> None:
    # The record turns final a moment before the final event is published; a stream
    # opened in that moment waits for the event instead of ending with a copy.
    journal, handle, name = paused_echo.state.journal, paused_echo.handle, paused_echo.name
    running = resources_pb2.TaskEvent(state=resources_pb2.TASK_STATE_RUNNING, attempt=1)
    await journal.record(name, running, publish=False)
    await journal.publish(name, resources_pb2.TaskEvent(type="Progress", attempt=1))
    done = resources_pb2.TaskEvent(type="StopEvent", state=SUCCEEDED, attempt=1)
    done.payload.string_value = "r"
    await journal.record(name, done, publish=False)  # final, its event not out yet
    events = handle.events()
    assert (await anext(events)).type == "Progress"
    await journal.publish(name, done, event_id=f"{name.task_id}.final")
    last = await anext(events)
    assert (last.type, last.state, last.payload) == ("StopEvent", "SUCCEEDED", "r")
    await events.aclose()


async def test_a_stream_the_client_leaves_leaves_no_read_behind(
    nats: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    async with LocalMesh({"approval": ApprovalWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task("approval", question="Ship it?")
        async for event in handle.events():
            if event.type == "InputRequiredEvent":
                break  # the server is reading the next event when the call ends
    gc.collect()  # an abandoned task that ended with an exception is reported here
    assert "never retrieved" not in caplog.text


async def test_failure_is_typed(nats: EmbeddedNats) -> None:
    async with LocalMesh({"fail": FailingWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with pytest.raises(TaskFailedError) as raised:
            await session.run("fail", message="disk on fire")
        assert raised.value.error_type == "Boom"
        assert "disk on fire" in raised.value.message
        task = await mesh.client.get_task(raised.value.task_name)
        assert task.state == FAILED
        assert error_type(task.error) == "Boom"
        assert "disk on fire" in task.error.message
        assert not task.HasField("result")
        # The failed task is dead-lettered.
        state = mesh.control_plane
        assert state is not None
        info = await state.state.js.stream_info(state.state.topology.dead_letter_stream)
        assert info.state.messages == 1


async def test_retryable_failure_succeeds_on_second_attempt(nats: EmbeddedNats) -> None:
    config = ServiceConfig("flaky", retry=RetryConfig(initial_backoff=0.05))
    async with LocalMesh({"flaky": (FlakyWorkflow(), config)}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task("flaky", key="k1")
        assert await handle.result() == "ok after 2"
        task = await handle.get()
        assert task.state == SUCCEEDED
        assert task.attempt_count == 2
        types = [e.type async for e in handle.events()]
        assert types == ["llama_mesh.AttemptFailed", "StopEvent"]


async def test_unknown_service_is_not_found_at_once(nats: EmbeddedNats) -> None:
    async with LocalMesh({"echo": EchoWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with pytest.raises(NotFoundError, match="'nope' is not registered"):
            await session.run("nope", arg1="x")
        with pytest.raises(NotFoundError):
            await mesh.client.get_session("no-such-session")


async def test_bad_input_is_invalid_argument(nats: EmbeddedNats) -> None:
    async with LocalMesh(
        {"echo": EchoWorkflow(), "typed": TypedWorkflow()}, nats_url=nats.url
    ) as mesh:
        client = mesh.client
        session = await client.create_session()
        with pytest.raises(InvalidArgumentError, match="not a task name"):
            await client.get_task("tasks/123")
        with pytest.raises(InvalidArgumentError, match="not a valid session id"):
            await client.create_session("bad id!")
        with pytest.raises(InvalidArgumentError, match=r"task\.service is required"):
            await client.call(
                client.stub.CreateTask,
                cp.CreateTaskRequest(parent=session.name, task=resources_pb2.Task()),
            )
        with pytest.raises(InvalidArgumentError, match="not a session name"):
            await client.call(
                client.stub.CreateTask,
                cp.CreateTaskRequest(parent="nope", task=resources_pb2.Task(service="echo")),
            )
        with pytest.raises(InvalidArgumentError, match="not JSON"):
            await session.run("echo", arg1=object())
        with pytest.raises(InvalidArgumentError, match="over the limit"):
            await session.run("echo", arg1="x" * (2 << 20))
        with pytest.raises(InvalidArgumentError, match=r"lacks required field\(s\) \['name'\]"):
            await session.run("typed", times=2)
        assert await session.run("typed", name="ada", times=2) == "hi ada hi ada"
        with pytest.raises(AlreadyExistsError):
            await client.create_session(session.id)
        same = await client.get_or_create_session(session.id)
        assert same.name == session.name


async def test_request_id_makes_create_idempotent(nats: EmbeddedNats) -> None:
    async with LocalMesh({"echo": EchoWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        first = await session.create_task("echo", request_id="order-42", arg1="a")
        again = await session.create_task("echo", request_id="order-42", arg1="a")
        assert first.name == again.name
        assert await again.result() == "a_result"
        assert len(await session.list_tasks()) == 1


async def test_many_concurrent_runs_lose_nothing(nats: EmbeddedNats) -> None:
    config = ServiceConfig("echo", max_concurrency=32)
    async with LocalMesh({"echo": (EchoWorkflow(), config)}, nats_url=nats.url) as mesh:
        sessions = [await mesh.client.create_session() for _ in range(20)]
        gate = asyncio.Semaphore(32)

        async def one(i: int) -> object:
            async with gate:
                return await sessions[i % 20].run("echo", arg1=i)

        results = await asyncio.gather(*(one(i) for i in range(200)))
        assert results == [f"{i}_result" for i in range(200)]
        tasks = await mesh.client.list_tasks("-")
        assert len(tasks) == 200
        assert all(t.state == SUCCEEDED for t in tasks)


async def test_tasks_list_newest_first_in_pages(nats: EmbeddedNats) -> None:
    # The client names its tasks from a request_id: their ids are hashes, in no order.
    async with LocalMesh({"echo": EchoWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        created = [(await session.create_task("echo", arg1=i)).name for i in range(12)]
        assert sorted(created) != created  # else this test would prove nothing
        assert [t.name for t in await session.list_tasks()] == created[::-1]
        pages, token = [], ""
        while True:
            page = await mesh.client.stub.ListTasks(
                cp.ListTasksRequest(parent=session.name, page_size=5, page_token=token)
            )
            pages.append([t.name for t in page.tasks])
            token = page.next_page_token
            if not token:
                break
        assert [len(p) for p in pages] == [5, 5, 2]
        assert [name for p in pages for name in p] == created[::-1]


async def test_two_control_planes_serve_the_same_sessions(nats: EmbeddedNats) -> None:
    async with (
        LocalMesh({"echo": EchoWorkflow()}, nats_url=nats.url) as mesh,
        ControlPlaneServer.start([nats.url]) as second,
        AsyncClient(second.address) as other,
    ):
        session = await mesh.client.create_session("shared")
        handle = await (await other.get_session("shared")).create_task("echo", arg1="x")
        assert await mesh.client.task(handle.name).result() == "x_result"
        assert [s.name for s in await other.list_sessions()] == ["sessions/shared"]
        assert session.name == "sessions/shared"


async def test_replica_killed_mid_task_hands_it_to_another(nats: EmbeddedNats) -> None:
    async with ControlPlaneServer.start([nats.url]) as cp_server:
        args = (
            "serve",
            "service",
            "mesh_workflows:SlowWorkflow",
            "--name",
            "slow",
            "--control-plane",
            cp_server.address,
            "--ack-wait",
            "1",
        )
        async with (
            component(*args) as (proc_a, ready_a),
            component(*args) as (proc_b, ready_b),
            AsyncClient(cp_server.address) as client,
        ):
            procs = {ready_a["replica_id"]: proc_a, ready_b["replica_id"]: proc_b}
            session = await client.create_session()
            handle = await session.create_task("slow", arg1="job", seconds=1.0)
            async for event in handle.events():
                if event.type == "SlowStarted":
                    break
            victim = (await handle.get()).replica_id
            procs[victim].send_signal(signal.SIGKILL)
            await procs[victim].wait()
            assert await handle.result() == "job_slow"
            task = await handle.get()
            assert task.replica_id != victim
            assert task.attempt_count == 2
            finals = [e async for e in handle.events() if e.final]
            assert len(finals) == 1  # exactly one result


async def test_control_plane_restart_keeps_waits_sessions_and_tasks(
    nats: EmbeddedNats,
) -> None:
    first_cp = contextlib.AsyncExitStack()
    first = await first_cp.enter_async_context(ControlPlaneServer.start([nats.url]))
    port = int(first.address.rpartition(":")[2])
    try:
        async with (
            AsyncClient(first.address) as client,
            ServiceRuntime.start(SlowWorkflow(), ServiceConfig("slow"), first.address),
        ):
            session = await client.create_session("keep")
            handle = await session.create_task("slow", arg1="r", seconds=1.5)
            async for event in handle.events():
                if event.type == "SlowStarted":
                    break
            waiting = asyncio.create_task(handle.result())
            await first_cp.aclose()  # the control plane goes away mid-wait
            async with ControlPlaneServer.start([nats.url], port=port):
                assert await waiting == "r_slow"
                assert (await client.get_session("keep")).name == "sessions/keep"
                assert (await handle.get()).state == SUCCEEDED
    finally:
        await first_cp.aclose()


async def test_a_stream_ends_unavailable_when_its_control_plane_stops(
    nats: EmbeddedNats,
) -> None:
    """An open event stream ends with UNAVAILABLE as its control plane shuts down (the
    client resumes it on another), not cut off once the grace period is over."""
    first_cp = contextlib.AsyncExitStack()
    first = await first_cp.enter_async_context(ControlPlaneServer.start([nats.url]))
    port = int(first.address.rpartition(":")[2])
    try:
        async with (
            AsyncClient(first.address) as client,
            ServiceRuntime.start(SlowWorkflow(), ServiceConfig("slow"), first.address),
        ):
            session = await client.create_session()
            handle = await session.create_task("slow", arg1="r", seconds=60)
            call = client.stub.StreamTaskEvents(cp.StreamTaskEventsRequest(name=handle.name))
            started = False
            while not started:
                response = await call.read()
                assert isinstance(response, cp.StreamTaskEventsResponse)
                started = response.event.type == "SlowStarted"
            stopping = asyncio.create_task(first_cp.aclose())
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while True:
                    assert await call.read() is not grpc.aio.EOF
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "resume the stream" in str(ended.value.details())
            await stopping
            async with ControlPlaneServer.start([nats.url], port=port):
                await handle.cancel()  # the replica has nothing left to wait for
                assert (await handle.wait()).state == resources_pb2.TASK_STATE_CANCELLED
    finally:
        await first_cp.aclose()


async def test_idle_mesh_sends_no_messages(nats: EmbeddedNats) -> None:
    import nats as nats_py

    config = ServiceConfig("echo", lease=120.0, max_concurrency=1)
    spy = await nats_py.connect(nats.url)
    # With one slot the replica asks for one task at start and, after recording the warm
    # run's result, for the next one: the caller can see the result before that second
    # request is out. The idle state starts once the server has both.
    pulls: list[object] = []
    both_asked = asyncio.Event()

    async def on_pull(msg: object) -> None:
        pulls.append(msg)
        if len(pulls) == 2:
            both_asked.set()

    watch = await spy.subscribe("$JS.API.CONSUMER.MSG.NEXT.MESH_TASKS.svc_echo", cb=on_pull)
    await spy.flush()
    async with LocalMesh({"echo": (EchoWorkflow(), config)}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        assert await session.run("echo", arg1="warm") == "warm_result"
        async with asyncio.timeout(30):
            await both_asked.wait()
        await watch.unsubscribe()
        seen: list[str] = []

        async def record(msg: object) -> None:
            seen.append(getattr(msg, "subject", ""))

        await spy.subscribe(">", cb=record)
        await spy.flush()
        start = time.monotonic()
        # An observation window, not a wait for readiness: nothing may happen in it.
        await asyncio.sleep(2.0)
        await spy.close()
        assert time.monotonic() - start >= 2.0
        assert seen == []
