"""The questions one attempt's workflow asks (human in the loop).

A question an earlier attempt of the task asked and got answered is answered again from
the stored answers (task_inputs.py); only an unanswered one makes the task WAITING, and
its answer is passed into the workflow once it comes. attempt.py hands each request for
input of the run here.

Like every other write of an attempt, these wait out a store that does not answer
(jetstream/outages.py): an election while the task asks costs time, not an attempt.
The question keeps its event id across tries, so one whose answer was lost is
published once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from workflows.handler import WorkflowHandler

from llama_mesh.core.failpoints import failpoint
from llama_mesh.core.lifecycle import WAITING
from llama_mesh.core.names import TaskName, new_id
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import ttl_of
from llama_mesh.jetstream.outages import through_outages
from llama_mesh.telemetry import metrics
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.task_inputs import MakeEvent, TaskInputs


def raise_swallowed_cancel() -> None:
    """Raise again a cancel that a library swallowed. nats-py catches CancelledError
    while it flushes a publish, so a cancel signal that arrives during one is lost to
    the await it interrupted; the task still says it is being cancelled."""
    this = asyncio.current_task()
    if this is not None and this.cancelling():
        raise asyncio.CancelledError


class Questions:
    """The requests for input of one attempt of task `name`, answered in order."""

    def __init__(
        self,
        state: MeshState,
        name: TaskName,
        task: resources_pb2.Task,
        make_event: MakeEvent,
        replica_id: str,
        service: str,
        running: Callable[[], Awaitable[object]],
    ) -> None:
        """`running()` returns once the attempt's RUNNING record landed (a task is
        WAITING only after it was RUNNING)."""
        self.state = state
        self.name = name
        self.task = task
        self.make_event = make_event
        self.replica_id = replica_id
        self.service = service
        self.running = running
        # Tasks that pass events sent by clients into the workflow; the attempt
        # cancels them when it ends.
        self.forwards: set[asyncio.Task[None]] = set()
        # The answers the task got while it waited for input.
        self._inputs: TaskInputs | None = None

    async def ask(self, out: resources_pb2.TaskEvent, handler: WorkflowHandler) -> None:
        """The workflow's request for input `out`: answered from a stored answer, or the
        task is WAITING and the answer goes into `handler` once it comes."""
        state = self.state
        out.state = resources_pb2.TASK_STATE_UNSPECIFIED
        if self._inputs is None:
            self._inputs = TaskInputs(state, self.name, self.make_event)
        inputs = self._inputs
        await inputs.turn.acquire()  # released below, or by _forward once answered
        subscription: Any = None
        event_id = new_id()  # the same on a retry: asked once
        try:
            answer = await through_outages(inputs.stored, f"reading the answers of {self.name}")
            if answer is None:
                # Listen for the answer before telling anyone we wait.
                subscription = await inputs.subscribe()
                out.state = WAITING
                await self.running()
                await through_outages(
                    lambda: self._record_waiting(out, event_id),
                    f"recording {self.name} waiting for input",
                )
        except BaseException:
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
            inputs.turn.release()
            raise
        if answer is not None:
            inputs.turn.release()
            await through_outages(
                lambda: self._publish_answered(out, event_id),
                f"publishing the answered question of {self.name}",
            )
            handler.ctx.send_event(answer)
            return
        # Waiting for input until the answer is passed on (or the attempt ends).
        waiting = metrics.TASKS_WAITING.labels(self.service)
        waiting.inc()
        forward = asyncio.create_task(self._forward(inputs, subscription, handler))
        forward.add_done_callback(lambda _: waiting.dec())
        self.forwards.add(forward)
        raise_swallowed_cancel()

    async def _record_waiting(self, out: resources_pb2.TaskEvent, event_id: str) -> None:
        failpoint("questions.waiting")
        await self.state.journal.record(
            self.name, out, replica_id=self.replica_id, event_id=event_id
        )
        failpoint("questions.waiting_recorded")

    async def _publish_answered(self, out: resources_pb2.TaskEvent, event_id: str) -> None:
        await self.state.journal.publish(self.name, out, event_id=event_id, ttl=ttl_of(self.task))
        failpoint("questions.answered_published")

    def recheck(self) -> None:
        """Look for answers again (NATS was away: they reached no subscription)."""
        if self._inputs is not None:
            self._inputs.recheck()

    async def _forward(
        self, inputs: TaskInputs, subscription: Any, handler: WorkflowHandler
    ) -> None:
        try:
            handler.ctx.send_event(await inputs.next(subscription))
        finally:
            inputs.turn.release()
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
