"""A run's events go out through an ordered outbox (worker/event_outbox.py): the run does
not wait for each event's PubAck, and still the stream holds its events in the order the
run produced them, nothing recorded after an event (a question, a decision, the tokens
charged, the final event, a cancellation) overtakes it, and an event the store did not
take is never followed by the task's success (issue 14, token latency).

Faults are injected at the exact point (core/failpoints.py): the batch publish of the
outbox (`journal.publish_many`) gets no answer before it is sent, loses its answers
after it was sent, or is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

from nats.js.errors import APIError, NoStreamResponseError
from workflows import Context, Workflow, step
from workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)

from llama_mesh.core.failpoints import armed
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.api_errors import JS_STORAGE_RESOURCES_EXCEEDED
from llama_mesh.jetstream.event_history import events_so_far
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.child_tasks import publish_event
from llama_mesh.worker.event_outbox import MAX_GATHERED
from llama_mesh.worker.llm_usage import LLMCallUsage

# Called by the workflows below once they have written their events (and before they
# ask or decide anything): the tests arm their faults there.
AFTER_EVENTS: list[Callable[[], None]] = []


# What the decision waits for (an outage holding the batch with the events before it).
BEFORE_DECIDING: list[Callable[[], Awaitable[object]]] = []


def after_events() -> None:
    for hook in AFTER_EVENTS:
        hook()


class Token(Event):
    n: int


class BurstWorkflow(Workflow):
    """Writes `n` Token events at once (a burst of deltas), then returns n."""

    @step
    async def stream(self, ctx: Context, ev: StartEvent) -> StopEvent:
        n = int(ev.get("n", 100))
        for i in range(n):
            ctx.write_event_to_stream(Token(n=i))
        after_events()
        return StopEvent(result=n)


class AskAfterBurstWorkflow(Workflow):
    """Writes `n` Token events, then asks a person."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for i in range(int(ev.get("n", 20))):
            ctx.write_event_to_stream(Token(n=i))
        after_events()
        answer = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix="go on?"),  # type: ignore[call-arg]
        )
        return StopEvent(result=answer.response)


class DecideAfterBurstWorkflow(Workflow):
    """Writes `n` Token events, then publishes a decision (as an orchestrator does:
    not through the workflow's stream) once the events are on their way."""

    @step
    async def decide(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for i in range(int(ev.get("n", 20))):
            ctx.write_event_to_stream(Token(n=i))
        after_events()
        for wait in BEFORE_DECIDING:
            await wait()
        await publish_event("test.Decision", {"to": "nowhere"})
        return StopEvent(result="decided")


class ChargeAfterBurstWorkflow(Workflow):
    """Writes `n` Token events, an LLM call's tokens, then 5 Token events more."""

    @step
    async def charge(self, ctx: Context, ev: StartEvent) -> StopEvent:
        n = int(ev.get("n", 20))
        for i in range(n):
            ctx.write_event_to_stream(Token(n=i))
        after_events()
        ctx.write_event_to_stream(LLMCallUsage(model="m", prompt_tokens=7, completion_tokens=3))
        for i in range(n, n + 5):
            ctx.write_event_to_stream(Token(n=i))
        return StopEvent(result="charged")


class CancelledAfterBurstWorkflow(Workflow):
    """Writes `n` Token events, then works until it is cancelled."""

    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for i in range(int(ev.get("n", 20))):
            ctx.write_event_to_stream(Token(n=i))
        after_events()
        await asyncio.Event().wait()  # until the task is cancelled
        return StopEvent(result="never")


class Unanswered:
    """The store gives no answer to the next `lost` batch publishes once `start`ed."""

    def __init__(self, lost: int) -> None:
        self.lost = 0
        self._to_lose = lost
        # A batch went unanswered twice: the retry waited in between, and the run's
        # events so far reached the outbox meanwhile.
        self.held = asyncio.Event()

    def start(self) -> None:
        self.lost = self._to_lose

    def lose(self) -> None:
        if self.lost:
            self.lost -= 1
            if self._to_lose - self.lost >= 2:
                self.held.set()
            raise NoStreamResponseError


@contextlib.contextmanager
def unanswered_after_events(point: str, lost: int) -> Iterator[Unanswered]:
    """The batch publishes at failpoint `point` get no answer `lost` times, from the
    moment the workflow has written its events."""
    election = Unanswered(lost)
    AFTER_EVENTS[:] = [election.start]
    BEFORE_DECIDING[:] = [election.held.wait]
    try:
        with armed(point, election.lose):
            yield election
    finally:
        AFTER_EVENTS.clear()
        BEFORE_DECIDING.clear()


async def _stream(mesh: LocalMesh, task: str) -> list[resources_pb2.TaskEvent]:
    """The task's events as the event stream holds them, in stream order."""
    assert mesh.control_plane is not None
    state = mesh.control_plane.state
    task_id = TaskName.parse(task).task_id
    return await events_so_far(state.js, state.topology, task_id)


def _tokens(events: list[resources_pb2.TaskEvent], attempt: int = 1) -> list[int]:
    return [
        int(e.payload.struct_value.fields["n"].number_value)
        for e in events
        if e.type.endswith("Token") and e.attempt == attempt
    ]


async def test_a_burst_is_stored_in_the_order_it_was_produced_across_lost_answers(
    nats: EmbeddedNats,
) -> None:
    # Answers lost after the batch was sent (it is stored): the batch is sent again
    # and each event is stored once, in its place.
    async with LocalMesh({"burst": BurstWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with unanswered_after_events("journal.batch_sent", lost=3) as election:
            handle = await session.create_task("burst", n=300)
            assert await handle.result() == 300
        assert election.lost == 0
        events = await _stream(mesh, handle.name)
        assert _tokens(events) == list(range(300))  # the stream's order, not sorted
        assert events[-1].state == resources_pb2.TASK_STATE_SUCCEEDED
        assert [e for e in events if e.state != resources_pb2.TASK_STATE_RUNNING] == [events[-1]]
        assert (await handle.get()).attempt_count == 1  # waited out, not handed back


async def test_the_final_event_waits_for_every_event_before_it(nats: EmbeddedNats) -> None:
    # The store does not answer while the run ends: its events wait, and so do its
    # commit and final event.
    async with LocalMesh({"burst": BurstWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with unanswered_after_events("journal.publish_many", lost=4) as election:
            # More than MAX_GATHERED: the run is held back until the store answers.
            handle = await session.create_task("burst", n=MAX_GATHERED * 2)
            assert await handle.result() == MAX_GATHERED * 2
        events = await _stream(mesh, handle.name)
        assert _tokens(events) == list(range(MAX_GATHERED * 2))
        assert events[-1].type == "StopEvent"
        assert events[-1].state == resources_pb2.TASK_STATE_SUCCEEDED
        assert election.lost == 0  # the run ended while its events waited


async def test_a_question_waits_for_the_events_before_it(nats: EmbeddedNats) -> None:
    async with LocalMesh({"ask": AskAfterBurstWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with unanswered_after_events("journal.publish_many", lost=4):
            handle = await session.create_task("ask", n=20)
            async for event in handle.events():
                if event.state == "WAITING_FOR_INPUT":
                    break
        events = await _stream(mesh, handle.name)
        assert _tokens(events) == list(range(20))
        assert events[-1].type == "InputRequiredEvent"
        assert events[-1].state == resources_pb2.TASK_STATE_WAITING_FOR_INPUT
        await handle.send_event("HumanResponseEvent", response="yes")
        assert await handle.result() == "yes"


async def test_a_decision_published_by_the_run_comes_after_its_events(
    nats: EmbeddedNats,
) -> None:
    async with LocalMesh({"decide": DecideAfterBurstWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with unanswered_after_events("journal.publish_many", lost=4):
            assert await session.run("decide", n=20) == "decided"
        tasks = await session.list_tasks()
        events = await _stream(mesh, tasks[0].name)
        types = [e.type.rpartition(".")[2] for e in events]
        assert types == ["Token"] * 20 + ["Decision", "StopEvent"]
        assert _tokens(events) == list(range(20))


async def test_tokens_are_charged_after_the_events_before_them(nats: EmbeddedNats) -> None:
    async with LocalMesh({"charge": ChargeAfterBurstWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with unanswered_after_events("journal.publish_many", lost=4):
            handle = await session.create_task("charge", n=20)
            assert await handle.result() == "charged"
        events = await _stream(mesh, handle.name)
        types = [e.type.rpartition(".")[2] for e in events]
        assert types == ["Token"] * 20 + ["TokenUsage"] + ["Token"] * 5 + ["StopEvent"]
        assert _tokens(events) == list(range(25))
        task = await handle.get()
        assert (task.usage.prompt_tokens, task.usage.completion_tokens) == (7, 3)


async def test_a_cancelled_run_is_recorded_cancelled_after_its_events(
    nats: EmbeddedNats,
) -> None:
    workflow = CancelledAfterBurstWorkflow()
    async with LocalMesh({"cancelled": workflow}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with unanswered_after_events("journal.publish_many", lost=4) as election:
            handle = await session.create_task("cancelled", n=20)
            await election.held.wait()  # its events are held by the store
            await handle.cancel("enough")
            task = await handle.wait()
        assert task.state == resources_pb2.TASK_STATE_CANCELLED
        events = await _stream(mesh, handle.name)
        assert _tokens(events) == list(range(20))
        assert events[-1].state == resources_pb2.TASK_STATE_CANCELLED
        assert len(events) == 21
    # The outbox's sending task ended with its attempt.
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("events of")]


async def test_a_refused_batch_hands_the_attempt_back_and_the_next_one_runs_whole(
    nats: EmbeddedNats,
) -> None:
    # The store refuses the run's first batch (not an outage): the attempt does not
    # commit past it; the task is handed back and its next attempt stores every event.
    refused = [0]

    def refuse_first() -> None:
        if not refused[0]:
            refused[0] += 1
            raise APIError(code=500, description="injected refusal")

    async with LocalMesh({"burst": BurstWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with armed("journal.publish_many", refuse_first):
            handle = await session.create_task("burst", n=30)
            assert await handle.result() == 30
        assert refused == [1]
        task = await handle.get()
        assert task.attempt_count == 2
        events = await _stream(mesh, handle.name)
        assert _tokens(events, attempt=1) == []  # nothing of the refused batch, or after it
        assert _tokens(events, attempt=2) == list(range(30))
        assert events[-1].state == resources_pb2.TASK_STATE_SUCCEEDED


async def test_a_full_store_fails_the_task_saying_so(nats: EmbeddedNats) -> None:
    def full() -> None:
        raise APIError(code=400, err_code=JS_STORAGE_RESOURCES_EXCEEDED, description="full")

    async with LocalMesh({"burst": BurstWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with armed("journal.publish_many", full):
            handle = await session.create_task("burst", n=30)
            task = await handle.wait()
        assert task.state == resources_pb2.TASK_STATE_FAILED
        assert task.error.code == 8  # RESOURCE_EXHAUSTED
        assert "storage is full" in task.error.message
        events = await _stream(mesh, handle.name)
        assert _tokens(events) == []
