"""Faults at a replica: a drain whose call gives up first, an answer that does not fit
the event it is for (issue 12, items 10 and 12)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from workflows import Workflow, step
from workflows.events import HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent

from llama_mesh.client import AsyncClient, AsyncSession, TaskHandle
from llama_mesh.config import ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.failpoints import armed
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.journal import TaskJournal
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2, service_pb2, service_pb2_grpc

from mesh_workflows import ApprovalWorkflow, SlowWorkflow
from processes import component


def _slow_replica(control_plane: str) -> tuple[str, ...]:
    return (
        "serve",
        "service",
        "mesh_workflows:SlowWorkflow",
        "--name",
        "slow",
        "--control-plane",
        control_plane,
    )


@pytest.mark.timeout(180)
async def test_a_drain_whose_call_deadline_passes_still_drains_the_replica(
    nats: EmbeddedNats,
) -> None:
    async with (
        ControlPlaneServer.start([nats.url]) as cp_server,
        component(*_slow_replica(cp_server.address)) as (first, ready),
        AsyncClient(cp_server.address) as client,
    ):
        session = await client.create_session()
        handle = await session.create_task("slow", arg1="job", seconds=600.0)
        async for event in handle.events():
            if event.type == "SlowStarted":
                break
        async with grpc.aio.insecure_channel(ready["address"]) as channel:
            replica = service_pb2_grpc.ServiceAPIStub(channel)
            try:
                drained = await replica.DrainService(service_pb2.DrainServiceRequest(), timeout=1.0)
                assert drained.requeued_task_count == 1
            except grpc.aio.AioRpcError as err:  # the answer may come too late: either way
                assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The drain went on without its caller: the task went back, the replica left.
        assert await first.wait() == 0
        async with component(*_slow_replica(cp_server.address)):
            task = await handle.get()
            assert await handle.cancel("enough")
        assert task.attempt_count == 1


async def test_a_drain_goes_on_when_its_caller_is_cancelled(nats: EmbeddedNats) -> None:
    # What gRPC does to DrainService when the call's deadline passes: it cancels the
    # handler. The drain must not stop halfway, leaving the replica DRAINING for good.
    async with LocalMesh({"slow": SlowWorkflow()}, nats_url=nats.url) as mesh:
        [runtime] = mesh.services["slow"]
        session = await mesh.client.create_session()
        handle = await session.create_task("slow", arg1="job", seconds=600.0)
        async for event in handle.events():
            if event.type == "SlowStarted":
                break
        caller = asyncio.create_task(runtime.drain(timeout=0.5))
        await asyncio.sleep(0)  # one turn of the loop: the caller is inside the drain
        assert runtime.draining
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await runtime.drained.wait()
        assert await runtime.drain() == (0, 1)  # a second call: the first one's counts
        with pytest.raises(Exception, match="draining"):
            await runtime.resume()
        task = await handle.get()
        assert task.attempt_count == 1
        assert runtime.running_tasks() == []


@pytest.mark.parametrize("asks", ["before the drain", "during the drain"])
async def test_a_drain_hands_back_at_once_a_task_that_waits_for_input(
    nats: EmbeddedNats, asks: str
) -> None:
    # A person (or a client with its tool results) may answer in hours: a replica that
    # drains (a restart, Ctrl-C) gives the task back at once instead of sitting out its
    # deadline, and the task waits again on another replica.
    async with LocalMesh({"approval": ApprovalWorkflow()}, nats_url=nats.url) as mesh:
        [first] = mesh.services["approval"]
        session = await mesh.client.create_session()
        drains: list[asyncio.Task[tuple[int, int]]] = []

        def drain_first() -> None:
            if not drains:  # the other replica's attempt passes here too
                drains.append(asyncio.create_task(first.drain(timeout=600)))

        if asks == "before the drain":
            handle = await _waiting(session, "approval")
            drain_first()
        else:
            with armed("attempt.began", drain_first):  # runs, then asks
                handle = await _waiting(session, "approval")
        second = await mesh.add_service(ApprovalWorkflow(), ServiceConfig("approval"))
        assert await asyncio.wait_for(drains[0], 30) == (0, 1)  # (finished, handed back)
        async for event in handle.events():
            if event.type == "InputRequiredEvent" and event.attempt == 2:
                break  # asked again, on the other replica
        await handle.send_event("HumanResponseEvent", response="yes")
        assert await handle.result() == {"answer": "yes"}
        task = await handle.get()
        assert (task.attempt_count, task.replica_id) == (2, second.replica_id)


# ------------------------------------------------------------ answers (item 12)


class Verdict(HumanResponseEvent):
    """A typed answer (a HumanResponseEvent: no step needs to produce it)."""

    approved: bool
    note: str = ""


class Review(Workflow):
    """Asks for a Verdict, a typed answer."""

    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent(prefix="ok?")  # type: ignore[call-arg]

    @step
    async def decide(self, verdict: Verdict) -> StopEvent:
        return StopEvent(result={"approved": verdict.approved, "note": verdict.note})


async def _waiting(session: AsyncSession, service: str) -> TaskHandle:
    task = await session.create_task(service)
    async for event in task.events():
        if event.type == "InputRequiredEvent":
            return task
    raise AssertionError("the task never asked")


async def test_an_answer_is_checked_against_its_event_before_it_is_taken(
    nats: EmbeddedNats,
) -> None:
    async with LocalMesh(
        {"approval": ApprovalWorkflow(), "review": Review()}, nats_url=nats.url
    ) as mesh:
        session = await mesh.client.create_session()
        # `--arg answer=yes` where HumanResponseEvent carries `response`: taken before,
        # and the task then failed for good with AttributeError.
        task = await _waiting(session, "approval")
        with pytest.raises(InvalidArgumentError) as raised:
            await task.send_event("HumanResponseEvent", answer="yes")
        assert raised.value.message == (
            "payload lacks required field(s) ['response'] of event HumanResponseEvent "
            "(it has ['answer'])"
        )
        assert (await task.get()).state == resources_pb2.TASK_STATE_WAITING_FOR_INPUT
        await task.send_event("HumanResponseEvent", response="yes")
        assert await task.result() == {"answer": "yes"}

        typed = await _waiting(session, "review")
        with pytest.raises(InvalidArgumentError) as raised:
            await typed.send_event("Verdict", approved="yes")
        assert raised.value.message == (
            "payload.approved must be boolean for event Verdict (got string)"
        )
        with pytest.raises(InvalidArgumentError, match=r"lacks required field\(s\) \['approved'\]"):
            await typed.send_event("Verdict", note="fine")
        await typed.send_event("Verdict", approved=True, note="fine")
        assert await typed.result() == {"approved": True, "note": "fine"}


async def test_an_answer_sent_the_moment_the_question_is_seen_is_taken(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The question is published, then numbered in the task's record: an answer that
    comes in between (a client resuming as soon as it sees the question) waits for the
    number instead of being refused (it was UNAVAILABLE, "send the answer again")."""
    numbering = asyncio.Event()
    number = TaskJournal._number_request

    async def held_number(
        self: TaskJournal, name: TaskName, sequence: int
    ) -> tuple[resources_pb2.Task, int]:
        await numbering.wait()
        return await number(self, name, sequence)

    monkeypatch.setattr(TaskJournal, "_number_request", held_number)
    async with LocalMesh({"approval": ApprovalWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        task = await _waiting(session, "approval")  # seen: published, not yet numbered
        answering = asyncio.Event()
        with armed("task_answers.awaiting_number", answering.set):
            answer = asyncio.create_task(task.send_event("HumanResponseEvent", response="yes"))
            asked = asyncio.create_task(answering.wait())
            await asyncio.wait([answer, asked], return_when=asyncio.FIRST_COMPLETED)
            asked.cancel()
            assert not answer.done(), answer.exception()
            numbering.set()
            await answer
        assert await task.result() == {"answer": "yes"}
