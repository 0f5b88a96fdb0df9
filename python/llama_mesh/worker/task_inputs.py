"""The answers sent into one task while it waited for input, in the order they came.

SendTaskEvent stores each answer on the task's input subject in the event stream. An
attempt reads them in order: its first question gets the first answer, the second the
second. So an attempt that runs again after its replica crashed or restarted (every
process of the mesh may have restarted) finds the answers the task got before and goes
on without asking again; only a question nobody has answered yet makes the task wait.

A waiting task holds no JetStream consumer (a stream takes a limited number, and a mesh
may have thousands of tasks waiting on people): it listens on the input subject with a
plain NATS subscription and reads the stream directly (``get_msg``) for what was stored
before it listened, or while its connection was down (``recheck`` after a reconnect).
An answer is taken once, by its envelope id, whichever way it arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.subscription import Subscription
from nats.js.errors import NotFoundError as JsNotFoundError
from workflows.events import Event

from llama_mesh.core.json_values import to_python
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)

MakeEvent = Callable[[str, dict[str, Any]], Event]


class TaskInputs:
    """The input subject of one task, read by one attempt from the start."""

    def __init__(self, state: MeshState, name: TaskName, make_event: MakeEvent) -> None:
        self._state = state
        self._name = name
        self._make_event = make_event
        self._subject = state.topology.input_subject(name.task_id)
        # Stream sequence of the last stored answer looked at, and every answer taken.
        self.cursor = 0
        self._taken: set[str] = set()
        self._recheck = asyncio.Event()
        # Held from a question until its answer is in: questions asked at once (by
        # parallel steps) are answered one after the other, each answer once.
        self.turn = asyncio.Lock()

    def _take(self, data: bytes) -> Event | None:
        """The event an answer carries, unless it was taken already or cannot be built."""
        envelope = resources_pb2.Envelope.FromString(data)
        if envelope.id in self._taken:
            return None
        self._taken.add(envelope.id)
        sent = envelope.task_input
        try:
            return self._make_event(sent.type, to_python(sent.payload))
        except (KeyError, ValueError, TypeError) as err:
            logger.warning("task %s: cannot build %s: %s", self._name, sent.type, err)
            return None

    async def stored(self) -> Event | None:
        """The next stored answer not taken yet (e.g. to an earlier attempt's question)."""
        state = self._state
        while True:
            try:
                msg = await state.js.get_msg(
                    state.topology.event_stream,
                    seq=self.cursor + 1,
                    subject=self._subject,
                    next=True,
                )
            except JsNotFoundError:
                return None
            self.cursor = int(msg.seq or 0)
            event = self._take(msg.data or b"")
            if event is not None:
                return event

    async def subscribe(self) -> Subscription:
        """Listen for answers; do it before telling anyone the task waits."""
        return await self._state.nc.subscribe(self._subject)

    def recheck(self) -> None:
        """Look at the stream again: answers may have gone by while NATS was away."""
        self._recheck.set()

    async def next(self, subscription: Subscription) -> Event:
        """The next answer: stored since the last look, or as it arrives."""
        while True:
            self._recheck.clear()
            # What came before the subscription listened is in the stream only.
            event = await self.stored()
            if event is not None:
                return event
            arrived = asyncio.ensure_future(subscription.next_msg(timeout=None))
            recheck = asyncio.ensure_future(self._recheck.wait())
            try:
                await asyncio.wait({arrived, recheck}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                # A message that arrives as its wait is cancelled is still in the stream:
                # the next look at it finds it.
                arrived.cancel()
                recheck.cancel()
                await asyncio.gather(arrived, recheck, return_exceptions=True)
            if not arrived.cancelled() and arrived.exception() is None:
                event = self._take(arrived.result().data)
                if event is not None:
                    return event
