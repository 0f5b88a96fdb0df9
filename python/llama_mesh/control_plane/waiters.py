"""Long calls and what they wait for: the end of a task, or the server's shutdown.

WaitTask and RunTask wait for a task's last event, published on
`events.{task}.end`; one subscription to all of them wakes the waiting calls of this
control-plane replica. A wait or a stream also ends, with UNAVAILABLE, when the
server shuts down, so that the client calls again on another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from llama_mesh.core.errors import UnavailableError
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

    async def stop(self) -> None:
        if self._finals is not None:
            with contextlib.suppress(Exception):
                await self._finals.unsubscribe()
            self._finals = None

    async def _on_final(self, msg: Msg) -> None:
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


async def until_shutdown(
    items: AsyncIterator[Msg], shutting_down: asyncio.Event
) -> AsyncIterator[Msg]:
    """Items of `items`; UnavailableError if the server shuts down first."""
    stop = asyncio.ensure_future(shutting_down.wait())
    item: asyncio.Future[Msg] | None = None
    try:
        while True:
            item = asyncio.ensure_future(anext(items))
            await asyncio.wait({stop, item}, return_when=asyncio.FIRST_COMPLETED)
            if not item.done():
                raise UnavailableError("the control plane is shutting down; resume the stream")
            try:
                yield item.result()
            except StopAsyncIteration:
                return
    finally:
        stop.cancel()
        if item is not None:
            # Also when the call itself is cancelled (the client went away): the
            # pending read must not outlive it, nor end unread when the
            # subscription closes.
            item.cancel()
            item.add_done_callback(_consume)


def _consume(future: asyncio.Future[Msg]) -> None:
    if not future.cancelled():
        future.exception()
