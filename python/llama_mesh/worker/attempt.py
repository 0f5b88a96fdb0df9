"""One attempt of a task on this replica: the I/O around core/attempt_policy's decisions.

``take`` turns a delivered TaskAssignment into an attempt when
``attempt_policy.begin_attempt`` says to run one (attempt_delivery.py; the message is
settled at once when it does not). An ``Attempt`` waits for its turn in the session
(jetstream/session_turn.py: creation order, giving its delivery slot back while it
waits), records RUNNING (the workflow runs only once that landed), runs the workflow on
the session's saved Context (its events go out through an ordered outbox,
event_outbox.py; a request for input makes the task WAITING), commits the new Context
and the result together under its turn's fence once every event of the run is stored,
and hands how it ended, an ``Outcome``, to ``attempt_policy.end_attempt``;
``jetstream.delivery.settle`` records that decision and only then acks or naks the
message.

An attempt that finds its task's outcome committed already (the replica that committed
it died first) records that outcome without running again; one whose turn was taken
over by a later attempt of its task (it was stopped past the ack wait) stops and
records nothing.

A question the workflow asks (human in the loop) makes the task WAITING; its answer,
or one an earlier attempt of the task got, comes through task_inputs.py. The model
answers an earlier attempt got are replayed to the next one (model_replay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format, struct_pb2
from nats.aio.msg import Msg
from workflows.handler import WorkflowHandler

from llama_mesh.core import proto_time
from llama_mesh.core.attempt_policy import (
    Cancelled,
    DeadlinePassed,
    Failed,
    HandedBack,
    Outcome,
    Run,
    Succeeded,
    end_attempt,
)
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.failpoints import failpoint
from llama_mesh.core.json_values import check_finite, to_python, to_value
from llama_mesh.core.lifecycle import WAITING
from llama_mesh.core.limits import MAX_EVENT_BYTES, check_bytes
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.delivery import MessageDelivery, settle
from llama_mesh.jetstream.journal import ttl_of
from llama_mesh.jetstream.outages import through_outages
from llama_mesh.jetstream.session_turn import (
    Committed,
    ContextTooLarge,
    Held,
    SessionTurns,
    Superseded,
    WhileWaiting,
)
from llama_mesh.telemetry import metrics, tracing
from llama_mesh.telemetry.logs import log_scope
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.attempt_delivery import begin_delivered
from llama_mesh.worker.attempt_failures import (
    ResultNotJson,
    WorkflowFailed,
    attempt_failure,
    is_mesh_error,
)
from llama_mesh.worker.attempt_questions import Questions
from llama_mesh.worker.child_tasks import ChildCaller, RunningTask, current_task
from llama_mesh.worker.event_outbox import EventOutbox
from llama_mesh.worker.model_replay import recorded_answers, replaying
from llama_mesh.worker.running_record import AlreadyFinished, Recorded, RunningRecord
from llama_mesh.worker.token_ledger import TokenLedger
from llama_mesh.worker.workflow_runner import WorkflowRunner

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Worker:
    """What every attempt on one replica uses: the mesh, the workflow, who runs it."""

    state: MeshState
    runner: WorkflowRunner
    service: str
    replica_id: str
    ack_wait: float
    turns: SessionTurns
    # Gives the attempt's delivery slot back while it waits for its turn.
    while_waiting: WhileWaiting
    # How the workflow calls other services (nested workflows, tools) as child tasks.
    caller: ChildCaller | None = None
    # Whether a failed task's error carries the workflow's traceback.
    tracebacks: bool = True


@dataclass(frozen=True)
class _Ran:
    """The workflow ran and its Context and result are committed."""

    result: struct_pb2.Value
    recorded: Recorded


async def take(
    worker: Worker, msg: Msg, name: TaskName, session_ttl: float | None = None
) -> Attempt | None:
    """The attempt to run for this delivery of task `name`, or None when the message
    was settled at once (attempt_delivery.py). `session_ttl`: how long the session's
    saved state is kept once idle."""
    begun = await begin_delivered(worker.state, worker.service, worker.replica_id, msg, name)
    if begun is None:
        return None
    found, start = begun
    return Attempt(worker, msg, name, found, start, session_ttl)


class Attempt:
    """One attempt of one task; ``run`` it once."""

    def __init__(
        self,
        worker: Worker,
        msg: Msg,
        name: TaskName,
        known: Recorded,
        start: Run,
        session_ttl: float | None = None,
    ) -> None:
        self.worker = worker
        self.session_ttl = session_ttl
        self.msg = msg
        self.name = name
        self.known = known
        self.task = known[0]
        self.start = start
        self.number = start.attempt
        self.cancel_reason = ""
        self._run: asyncio.Task[_Ran | Committed] | None = None
        # The task that runs the attempt (the delivery's handler), cancelled to hand the
        # task back; whether its replica drains, and whether it was handed back so.
        self._owner: asyncio.Task[object] | None = None
        self._draining = False
        self.handed_back = False
        # The write that records the attempt as RUNNING (owned by _run_in_turn).
        self._started = RunningRecord(worker.state.journal, name, start, worker.replica_id, known)
        # What the workflow asks a person (human in the loop).
        self._questions = Questions(
            worker.state,
            name,
            self.task,
            worker.runner.make_event,
            worker.replica_id,
            worker.service,
            self._started.landed_if_started,
        )
        # Charges the tokens of the attempt's LLM calls to the task and its session.
        self._ledger = TokenLedger(worker.state, name, worker.replica_id)
        # The run's events on their way to the task's stream (its sender lives in `run`).
        self._outbox = EventOutbox(worker.state.journal, name, ttl_of(self.task))

    def cancel(self, reason: str) -> None:
        """The task was cancelled: stop the workflow."""
        self.cancel_reason = reason or "cancelled"
        if self._run is not None:
            self._run.cancel()

    @property
    def waiting_for_input(self) -> bool:
        """Whether its workflow waits for an answer (a person's, a client's tool results)."""
        return any(not forward.done() for forward in self._questions.forwards)

    def hand_back_once_waiting(self) -> None:
        """Its replica drains: the task goes back to the queue as soon as it waits for
        input (now, if it does), as at a drain's deadline. An answer may take hours;
        the next attempt, on another replica, finds it stored."""
        self._draining = True
        self._hand_back_if_waiting()

    def _hand_back_if_waiting(self) -> None:
        if self.handed_back or self._owner is None:
            return  # handed back already (a second cancel would cut its settling short)
        if self._draining and self.waiting_for_input:
            self.handed_back = True
            self._owner.cancel()  # what a stopping replica does: _attempt hands it back

    async def run(self) -> None:
        self._owner = asyncio.current_task()
        keepalive = asyncio.create_task(self._keep_alive())
        running = metrics.TASKS_RUNNING.labels(self.worker.service)
        running.inc()
        try:
            # Every line logged (or printed) while the attempt runs, the workflow's own
            # included (its asyncio tasks inherit the scope), says which task it is of.
            with log_scope(
                service=self.worker.service,
                replica=self.worker.replica_id,
                session=self.name.session_id,
                task=str(self.name),
            ):
                async with self._outbox:
                    await self._attempt()
        finally:
            running.dec()
            forwards = self._questions.forwards
            for child in (keepalive, *forwards):
                child.cancel()
            await asyncio.gather(keepalive, *forwards, return_exceptions=True)

    async def publish(self, event: resources_pb2.TaskEvent, event_id: str = "") -> None:
        """Publish an event on the task's stream from outside the run's event stream
        (a child announced, a decision): after the run's events so far; returns once
        stored."""
        await self._outbox.publish(event, event_id)

    def redelivered(self, msg: Msg) -> None:
        """The task's message came again while this attempt runs: the same attempt goes
        on, and answers (progress, ack, nak) for the newer delivery."""
        logger.info("task %s: delivered again while attempt %d runs here", self.name, self.number)
        self.msg = msg
        failpoint("attempt.redelivered")

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.worker.ack_wait / 3)
            with contextlib.suppress(Exception):
                failpoint("attempt.progress")
                await self.msg.in_progress()

    async def _settle(
        self, outcome: Outcome, known: Recorded | None = None, attempt: int | None = None
    ) -> resources_pb2.Task | None:
        """Record how attempt `attempt` (this one unless said) ended, then settle."""
        decision = end_attempt(self.task, attempt or self.number, outcome)
        return await through_outages(
            lambda: settle(
                self.worker.state,
                self.name,
                decision,
                MessageDelivery(self.msg),
                replica_id=self.worker.replica_id,
                known=known,
                ttl=ttl_of(self.task),
            ),
            f"recording how attempt {attempt or self.number} of {self.name} ended",
        )

    async def _attempt(self) -> None:
        task = self.task
        deadline = proto_time.epoch_seconds(task.deadline) if task.HasField("deadline") else None
        run = asyncio.create_task(self._run_in_turn(deadline))
        self._run = run
        scope = asyncio.timeout(None if deadline is None else max(deadline - time.time(), 0))
        try:
            async with scope:
                ran = await run
        except asyncio.CancelledError:
            if self.cancel_reason:
                await self._events_stored()
                await self._settle(Cancelled(self.cancel_reason))
                return
            # The replica itself is stopping: hand the task back for another replica.
            with contextlib.suppress(Exception):
                await self._settle(HandedBack(stopping=True))
            raise
        except WorkflowFailed as failed:
            await self._settle(attempt_failure(failed.error, self.worker.tracebacks))
            return
        except ContextTooLarge as err:
            # The same run would give the same Context: fail once, saying why.
            await self._settle(Failed("ContextTooLarge", err.message))
            return
        except ResultNotJson as err:
            # It was handed back and run again until its attempts ran out, the task then
            # failing as if its replicas had crashed.
            await self._settle(Failed("ResultNotJson", err.message))
            return
        except AlreadyFinished:
            await self.msg.ack_sync()
            return
        except Superseded as err:
            # A later attempt of this task has the message and the turn: leave both.
            logger.warning("task %s: attempt %d stops: %s", self.name, self.number, err)
            return
        except Exception as err:
            if isinstance(err, TimeoutError) and scope.expired():
                await self._events_stored()
                await self._settle(DeadlinePassed())
                return
            # The mesh's own calls failed (e.g. its store is full; an outage is waited
            # out where it happens): not the workflow's fault, so hand the task back
            # instead of failing it.
            logger.warning("task %s: handed back after %r", self.name, err)
            with contextlib.suppress(Exception):
                await self._settle(HandedBack(stopping=False))
            failpoint("attempt.handed_back")
            return
        if isinstance(ran, Committed):
            logger.info("task %s: its outcome was committed before; recording it", self.name)
            result = json_format.ParseDict(ran.result, struct_pb2.Value())
            await self._settle(Succeeded(result), attempt=ran.attempt)
            return
        await self._settle(Succeeded(ran.result), ran.recorded)

    async def _events_stored(self) -> None:
        """Before a run cut short is recorded as ended: its events so far are stored
        first, if the store takes them (the outbox logged why not)."""
        with contextlib.suppress(Exception):
            await self._outbox.flushed()

    async def _run_in_turn(self, deadline: float | None) -> _Ran | Committed:
        """Take the session's turn, run the workflow, commit its Context and result.

        The turn is given back here on any failure; a commit gives it up itself. The
        store not answering for a while (a NATS node died) is waited out at each step
        (jetstream/outages.py): it is no reason to end the attempt.
        """
        state = self.worker.state
        turns = self.worker.turns
        failpoint("attempt.began")
        waited = time.perf_counter()
        try:
            with tracing.span("session.turn"):
                held = await through_outages(
                    lambda: turns.take(
                        self.name,
                        self.number,
                        self.task.create_sequence,
                        child=bool(self.task.parent_task),
                        while_waiting=self.worker.while_waiting,
                        ttl=self.session_ttl,
                        meanwhile=self._started.start,
                    ),
                    f"taking the session's turn for {self.name}",
                )
        except BaseException:
            await asyncio.shield(self._started.drop())
            raise
        if isinstance(held, Committed):
            await self._started.ended()
            return held
        if held.turn:
            metrics.SESSION_LOCK_WAIT.labels(self.worker.service).observe(
                time.perf_counter() - waited
            )
        metrics.attempt_began(self.task, self.number)
        try:
            # RUNNING lands before the workflow runs (running_record.py).
            recorded = await self._started.landed()
            kwargs = to_python(self.task.input)
            token = current_task.set(
                RunningTask(str(self.name), deadline, self.worker.caller, self._outbox.flushed)
            )
            # A new attempt of a turn gets the model answers its earlier attempt got.
            answers = await through_outages(
                lambda: recorded_answers(state, self.name, self.number),
                f"reading the model answers {self.name} got before",
            )
            try:
                await through_outages(self._ledger.check, f"checking the budget of {self.name}")
                with replaying(answers):
                    try:
                        outcome = await self.worker.runner.run(kwargs, held.context, self._on_event)
                    except Exception:
                        # Its failure is recorded after its events (the outbox's own
                        # failure, if one was not stored, is raised instead).
                        await self._outbox.flushed()
                        raise
                # Nothing of the run is committed before all its events are stored.
                await self._outbox.flushed()
            except Exception as err:
                if isinstance(err, AlreadyFinished) or is_mesh_error(err):
                    raise
                raise WorkflowFailed(err) from err
            finally:
                current_task.reset(token)
            result = _json_result(outcome.result)
            failpoint("attempt.ran")
            # Safe to repeat: a commit that landed without its answer is found there.
            with tracing.span("context.save"):
                earlier = await through_outages(
                    lambda: turns.commit(
                        self.name,
                        self.number,
                        held,
                        outcome.context,
                        json_format.MessageToDict(result),
                    ),
                    f"committing attempt {self.number} of {self.name}",
                )
            failpoint("attempt.committed")
            if earlier is not None:
                return earlier  # another attempt of this task committed first: its outcome
            return _Ran(result, recorded)
        except BaseException:
            await asyncio.shield(self._give_back(held))
            raise

    async def _give_back(self, held: Held) -> None:
        await self._started.drop()
        with contextlib.suppress(Exception):
            await self.worker.turns.give_back(self.name, self.number, held)

    async def _on_event(self, out: resources_pb2.TaskEvent, handler: WorkflowHandler) -> None:
        """Publish an event of the run (the runner mapped it); tokens are charged to the
        task and its session as they are spent; a request for input makes the task
        WAITING and starts forwarding the answer."""
        out.attempt = self.number
        if out.HasField("usage"):
            await self._started.landed_if_started()
            # Recorded (and published) after the events before it are stored.
            await self._outbox.flushed()
            await self._ledger.charge(out)
            return
        # Checked before it is published: NATS would refuse it, and the same run would
        # stream it again (the task fails once, saying why).
        check_bytes(f"the payload of event {out.type}", out.payload.ByteSize(), MAX_EVENT_BYTES)
        if out.state != WAITING:
            await self._outbox.put(out)
            return
        await self._outbox.flushed()  # WAITING once everything before the question is out
        await self._questions.ask(out, handler)
        self._hand_back_if_waiting()

    def recheck_inputs(self) -> None:
        """Look for answers again (NATS was away: they reached no subscription)."""
        self._questions.recheck()


def _json_result(result: Any) -> struct_pb2.Value:
    """The workflow's result as a JSON value; ResultNotJson saying what is not."""
    try:
        value = to_value(result, "the workflow's result")
        check_finite(value)
    except InvalidArgumentError as err:
        what = err.message.removeprefix("the workflow's result is not JSON: ")
        raise ResultNotJson(f"the workflow's result is not JSON: {what}") from None
    return value
