"""The answers sent into one task while it waited for input, in the order they came.

SendTaskEvent stores each answer on the task's input subject in the event stream. An
attempt reads them in order: its first question gets the first answer, the second the
second. So an attempt that runs again after its replica crashed or restarted (every
process of the mesh may have restarted) finds the answers the task got before and goes
on without asking again; only a question nobody has answered yet makes the task wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from nats.js import api as js_api
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
        # Stream sequence of the last answer this attempt has taken.
        self.cursor = 0
        # Held from a question until its answer is in: questions asked at once (by
        # parallel steps) are answered one after the other, each answer once.
        self.turn = asyncio.Lock()

    def _event(self, data: bytes) -> Event | None:
        sent = resources_pb2.Envelope.FromString(data).task_input
        try:
            return self._make_event(sent.type, to_python(sent.payload))
        except (KeyError, ValueError, TypeError) as err:
            logger.warning("task %s: cannot build %s: %s", self._name, sent.type, err)
            return None

    async def stored(self) -> Event | None:
        """The next answer the task got already (to an earlier attempt's question)."""
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
            event = self._event(msg.data or b"")
            if event is not None:
                return event

    async def subscribe(self) -> Any:
        """A subscription to the answers after the last one taken; subscribe before
        telling anyone the task waits, so no answer goes by unseen."""
        state = self._state
        return await state.js.subscribe(
            self._subject,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
            config=js_api.ConsumerConfig(opt_start_seq=self.cursor + 1),
            stream=state.topology.event_stream,
        )

    async def next(self, subscription: Any) -> Event:
        """The next answer on `subscription` (which the caller closes)."""
        async for msg in subscription.messages:
            self.cursor = msg.metadata.sequence.stream
            event = self._event(msg.data)
            if event is not None:
                return event
        raise EOFError(f"task {self._name}: the input subscription ended")
