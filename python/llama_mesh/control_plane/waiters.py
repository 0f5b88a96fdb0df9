"""Long calls and what they wait for: the end of a task, or the server's shutdown.

WaitTask and RunTask wait for a task's last event, stored on `events.{task}.end` in the
event stream. One ordered push consumer of the stream per control-plane replica,
filtered on every task's last event (headers only: the task id is in the subject),
wakes the waiting calls of this replica; a woken call reads the task's record (one
consumer for all: a consumer per call would cost the server one to make and expire
each time). A last event is not lost on its way, and no call polls for it:

- lost between the stream and this process (a cluster route that broke while the
  stream's leader, on another node, stored it): the next delivery, or the consumer's
  idle heartbeat, shows the gap in the consumer's sequence, and nats.py makes the
  consumer again from the stream sequence after the last one it saw;
- the consumer gone (its node died; the connection was away longer than the server
  keeps a consumer nobody listens to): no heartbeat comes, and nats.py makes it again
  the same way;
- NATS reconnected, or nats.py dropped a delivery the subscription had no room for (a
  slow consumer: nats.py counts it as seen, so the consumer's sequence shows no gap):
  every waiting call reads its task's record again.

(A core NATS subscription to `events.*.end` had only the re-read after a reconnect: a
last event lost without one left its wait until the call's deadline.)

A wait or a stream also ends, with UNAVAILABLE, when the server shuts down, so that the
client calls again on another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import SlowConsumerError
from nats.js import api as js_api
from nats.js.client import DEFAULT_JS_SUB_PENDING_MSGS_LIMIT

from llama_mesh.core.errors import UnavailableError
from llama_mesh.core.failpoints import failpoint, held
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.outages import through_outages

HEARTBEAT = 5.0
"""Seconds between the consumer's idle heartbeats: one shows a last event lost on its
way (then delivered again); none for two of these and the consumer is made again."""
PENDING_LIMIT = DEFAULT_JS_SUB_PENDING_MSGS_LIMIT
"""Deliveries the subscription holds for its callback before nats.py drops one."""


class FinalEventWaiters:
    """Events set when a task's last event is stored, by task id."""

    def __init__(self, state: MeshState) -> None:
        self.state = state
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._finals: Subscription | None = None

    async def start(self) -> None:
        """Follow the last event of every task (one consumer for all waits)."""
        self.state.reconnect_hooks.append(self.recheck)
        self.state.drop_hooks.append(self._dropped)
        topology = self.state.topology
        self._finals = await through_outages(
            lambda: self.state.js.subscribe(
                topology.final_events,
                stream=topology.event_stream,
                cb=self._on_final,
                ordered_consumer=True,
                deliver_policy=js_api.DeliverPolicy.NEW,
                headers_only=True,
                idle_heartbeat=HEARTBEAT,
                pending_msgs_limit=PENDING_LIMIT,
            ),
            "following the tasks' last events",
        )

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.state.reconnect_hooks.remove(self.recheck)
        with contextlib.suppress(ValueError):
            self.state.drop_hooks.remove(self._dropped)
        if self._finals is not None:
            with contextlib.suppress(Exception):
                await self._finals.unsubscribe()
            self._finals = None

    async def recheck(self) -> None:
        """Every wait reads its task's record again (a last event may have been missed:
        NATS reconnected, or a delivery was dropped)."""
        for waiting in self._waiters.values():
            for done in waiting:
                done.set()

    async def _dropped(self, err: SlowConsumerError) -> None:
        # The subject is the stored message's: one of a task's last events, dropped
        # here or (rarely) from another reader of them; either way, read again.
        topology = self.state.topology
        subject = err.subject or ""
        if subject.startswith(f"{topology.prefix}.events.") and subject.endswith(".end"):
            await self.recheck()

    async def _on_final(self, msg: Msg) -> None:
        failpoint("waiters.final_heard")
        await held("waiters.final_held")
        task_id = msg.subject.split(".")[-2]
        for done in self._waiters.get(task_id, ()):
            done.set()

    @contextlib.asynccontextmanager
    async def waiter(self, task_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set when the task's last event is stored. Enter it before reading
        the task's record: either the record is final, or the event comes."""
        done = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(done)
        try:
            yield done
        finally:
            waiting = self._waiters.get(task_id)
            if waiting is not None:
                waiting.discard(done)
                if not waiting:
                    del self._waiters[task_id]


async def until_set(done: asyncio.Event, shutting_down: asyncio.Event) -> None:
    """Wait for `done`; UnavailableError if the server shuts down first."""
    stop = asyncio.ensure_future(shutting_down.wait())
    finished = asyncio.ensure_future(done.wait())
    try:
        await asyncio.wait({stop, finished}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        finished.cancel()
    if not done.is_set():
        raise UnavailableError("the control plane is shutting down; call again")


class Deliveries:
    """A subscription's messages for one reader, until the server shuts down.

    Subscribe with ``cb=deliveries.put`` inside ``async with``: the reader awaits each
    message as it comes (nats.py's ``sub.messages`` takes a task per message, and
    racing that against the shutdown took another: two more turns of the event loop
    on every event of a stream). At most `limit` wait here; beyond that the
    subscription's own queue holds them, as with ``sub.messages``. Once the server
    shuts down, reading raises UnavailableError.
    """

    def __init__(self, shutting_down: asyncio.Event, limit: int = 256) -> None:
        self._queue: asyncio.Queue[Msg | None] = asyncio.Queue(limit)
        self._shutting_down = shutting_down
        self._stop: asyncio.Task[Literal[True]] | None = None

    async def __aenter__(self) -> Deliveries:
        stop = asyncio.ensure_future(self._shutting_down.wait())
        stop.add_done_callback(self._stopped)
        self._stop = stop
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stop is not None:
            self._stop.remove_done_callback(self._stopped)
            self._stop.cancel()

    async def put(self, msg: Msg) -> None:
        await self._queue.put(msg)

    def _stopped(self, _: object) -> None:
        # Wakes a reader that waits (one that does not sees the shutdown next).
        if not self._queue.full():
            self._queue.put_nowait(None)

    def __aiter__(self) -> Deliveries:
        return self

    async def __anext__(self) -> Msg:
        msg = await self._queue.get()
        if msg is None or self._shutting_down.is_set():
            raise UnavailableError("the control plane is shutting down; resume the stream")
        return msg
