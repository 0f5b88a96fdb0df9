"""Long calls and what they wait for: the end of a task, or the server's shutdown.

WaitTask and RunTask wait for a task's last event, published on
`events.{task}.end`; one subscription to all of them wakes the waiting calls of this
control-plane replica, and so does NATS reconnecting (a last event published while the
connection was away reached no subscription): a woken call reads the task's record. A
wait or a stream also ends, with UNAVAILABLE, when the server shuts down, so that the
client calls again on another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from llama_mesh.core.errors import UnavailableError
from llama_mesh.core.failpoints import failpoint
from llama_mesh.jetstream.connection import MeshState


class FinalEventWaiters:
    """Events set when a task's last event is published, by task id."""

    def __init__(self, state: MeshState) -> None:
        self.state = state
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._finals: Subscription | None = None

    async def start(self) -> None:
        """Listen for the last event of every task (one subscription for all waits)."""
        self._finals = await self.state.nc.subscribe(
            self.state.topology.final_events, cb=self._on_final
        )
        self.state.reconnect_hooks.append(self.recheck)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.state.reconnect_hooks.remove(self.recheck)
        if self._finals is not None:
            with contextlib.suppress(Exception):
                await self._finals.unsubscribe()
            self._finals = None

    async def recheck(self) -> None:
        """After NATS reconnected: a last event published while it was away reached no
        subscription, so every wait reads its task's record again."""
        for waiting in self._waiters.values():
            for done in waiting:
                done.set()

    async def _on_final(self, msg: Msg) -> None:
        failpoint("waiters.final_heard")
        task_id = msg.subject.split(".")[-2]
        for done in self._waiters.get(task_id, ()):
            done.set()

    @contextlib.asynccontextmanager
    async def waiter(self, task_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set when the task's last event is published. Enter it before
        reading the task's record: either the record is final, or the event comes."""
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
