"""The events of one attempt's run on their way to the task's stream: in order, without
a store round trip each.

The run hands each event here (``put``) and goes on. One batch is in flight at a time:
while the store has not acknowledged it, the events that follow gather, and once it has
they go together as the next batch (``TaskJournal.publish_many``). So the stream holds
the events in the order the run produced them, and a burst of token deltas costs a
round trip per batch instead of one per delta. A store that does not answer is waited
out with the batch in hand (``through_outages``): each event keeps its id, so the batch
sent again stores each event once, and nothing after it is sent meanwhile.

What must not overtake an event waits for it: whatever is recorded after an event (a
question that makes the task WAITING, the tokens charged, the run's commit and so its
final event) awaits ``flushed()`` first, which returns once every event put before it
is stored. A publish the store refuses stops the outbox: nothing more is sent, and the
run's next ``put`` and every ``flushed`` raise that error, so the attempt fails or is
handed back as it was when each publish was awaited, never committed past a gap.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from types import TracebackType

from llama_mesh.core.names import TaskName, new_id
from llama_mesh.core.proto_time import now
from llama_mesh.jetstream.journal import Outgoing
from llama_mesh.jetstream.outages import through_outages
from llama_mesh.jetstream.remote_journal import Journal
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.attempt_questions import raise_swallowed_cancel

logger = logging.getLogger(__name__)

# Events gathered (not yet stored) before `put` waits for the store: a run that streams
# through a long outage is held back, as it was by each publish, not kept in memory.
MAX_GATHERED = 256


class OutboxClosedError(RuntimeError):
    """An event was put in an outbox that is not sending (its attempt has ended)."""


class EventOutbox:
    """The events of one attempt of task `name`, published in order, kept `ttl` seconds.

    Events are taken while the outbox is entered (``async with``); its sending task
    starts with the first event (a run may have none) and is cancelled on leaving:
    its attempt owns it.
    """

    def __init__(self, journal: Journal, name: TaskName, ttl: float | None) -> None:
        self._journal = journal
        self._name = name
        self._ttl = ttl
        self._gathered: list[Outgoing] = []
        self._put = 0  # events put so far
        self._stored = 0  # of those, stored (always the first ones)
        self._failure: Exception | None = None
        self._changed = asyncio.Condition()  # _stored grew, or _failure was set
        self._wake = asyncio.Event()  # events were put
        self._open = False
        self._sender: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventOutbox:
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def put(self, event: resources_pb2.TaskEvent, event_id: str = "") -> None:
        """Hand `event` (with its id: one is made if empty) over to be published after
        every event put before it; returns at once unless MAX_GATHERED wait. Raises what
        stopped the outbox, if a publish failed."""
        self._check()
        if not event.HasField("create_time"):
            event.create_time.CopyFrom(now())  # when it happened, not when it was sent
        self._gathered.append((event, event_id or new_id()))
        self._put += 1
        self._wake.set()
        if self._sender is None:
            self._sender = asyncio.create_task(self._send(), name=f"events of {self._name}")
        if self._put - self._stored > MAX_GATHERED:
            behind = self._put - MAX_GATHERED
            await self._until(lambda: self._stored >= behind)

    async def flushed(self) -> None:
        """Return once every event put so far is stored; raise what stopped the outbox
        if one of them was not."""
        put = self._put
        if self._stored < put:
            self._check()
            await self._until(lambda: self._stored >= put)

    async def publish(self, event: resources_pb2.TaskEvent, event_id: str = "") -> None:
        """Publish `event` after the events put before it; return once it is stored."""
        await self.put(event, event_id)
        await self.flushed()

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure
        if not self._open:
            raise OutboxClosedError(f"the events of {self._name} are no longer sent")

    async def _until(self, stored: Callable[[], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: stored() or self._failure is not None)
        if not stored():
            assert self._failure is not None
            raise self._failure

    async def _send(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._gathered:
                    batch, self._gathered = self._gathered, []
                    await through_outages(
                        functools.partial(
                            self._journal.publish_many, self._name, batch, ttl=self._ttl
                        ),
                        f"publishing {len(batch)} events of {self._name}",
                    )
                    raise_swallowed_cancel()
                    async with self._changed:
                        self._stored += len(batch)
                        self._changed.notify_all()
        except Exception as err:
            logger.warning(
                "task %s: %d events not published (%r); the attempt stops",
                self._name,
                self._put - self._stored,
                err,
            )
            async with self._changed:
                self._failure = err
                self._changed.notify_all()
