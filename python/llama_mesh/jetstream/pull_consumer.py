"""Event-driven delivery from a durable JetStream pull consumer.

The consumer asks the server for as many messages as it has free capacity (pull
requests that linger server-side for ``expires``) and receives them on one inbox as
they arrive. Capacity freed by a finished message is requested again at once. Nothing
polls: the only timer is the pull request's expiry, renewed when the server says it
expired (status 408), once per ``expires`` while idle.

Pull requests live on the consumer's leader. If that server dies, its requests die
with it and no 408 ever comes: the consumer asks again when JetStream announces a new
leader (an advisory), and, as a safety net, when nothing at all was heard for longer
than a request can live.

nats-py's ``fetch(batch>1)`` waits for a full batch until its timeout, which would
add latency; this keeps one outstanding request credit per free slot instead.

A handler that has to wait for something other than work (a task waiting for an
earlier one of its session) gives its slot back meanwhile (``slot_given_back``), so
that waiting handlers never fill every slot and keep out the message they wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

logger = logging.getLogger(__name__)

Handler = Callable[[Msg], Awaitable[None]]


class PullConsumer:
    """Delivers messages of a durable consumer to `handler`, at most `capacity` at once.

    Each handler call runs in its own task, owned by this object; ``stop`` stops
    asking for messages, and ``wait_idle`` waits for running handlers to finish.
    """

    def __init__(
        self,
        nc: NatsClient,
        stream: str,
        durable: str,
        handler: Handler,
        *,
        capacity: int,
        expires: float = 60.0,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._nc = nc
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._handler = handler
        self.capacity = capacity
        self._credit = 0  # messages requested and not yet received
        self._running: set[asyncio.Task[None]] = set()
        self._waiting = 0  # running handlers that gave their slot back for a while
        self._slot_freed = asyncio.Condition()
        self._sub: Subscription | None = None
        self._advisories: Subscription | None = None
        self._leader_subject = f"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{stream}.{durable}"
        self._expires = expires
        self._watchdog: asyncio.TimerHandle | None = None
        self._inbox = ""
        self._taking = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._lost: asyncio.Future[None] | None = None

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def _busy(self) -> int:
        """Slots taken: running handlers, less those that gave theirs back."""
        return len(self._running) - self._waiting

    @contextlib.asynccontextmanager
    async def slot_given_back(self) -> AsyncIterator[None]:
        """Within the block the calling handler holds no slot (more messages come in
        its place); on leaving, it waits for a free slot and takes it again."""
        self._waiting += 1
        try:
            async with self._slot_freed:
                self._slot_freed.notify_all()  # a handler waiting to come back may
            await self._request_more()
            yield
            async with self._slot_freed:
                await self._slot_freed.wait_for(lambda: self._busy < self.capacity)
        finally:
            # Back in (or ending on an error, when waiting for a slot is no use).
            self._waiting -= 1

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)
        self._advisories = await self._nc.subscribe(self._leader_subject, cb=self._on_new_leader)
        self._taking = True
        await self._request_more()

    async def resume(self) -> None:
        """Take messages again after ``pause``."""
        self._taking = True
        await self.reconnected()

    def pause(self) -> None:
        """Stop asking for messages; any already requested are handed back (nak)."""
        self._taking = False

    async def reconnected(self) -> None:
        """Pull requests die with a server: ask again after a reconnect."""
        self._credit = 0
        await self._request_more()

    async def stop(self) -> None:
        self._taking = False
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._lost is not None:
            self._lost.cancel()
        for sub in (self._sub, self._advisories):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        self._sub = self._advisories = None

    async def _on_new_leader(self, msg: Msg) -> None:
        logger.info("consumer %s has a new leader: asking again", self._leader_subject)
        await self.reconnected()

    def _arm_watchdog(self) -> None:
        """Re-arm the timer that fires if the server stays silent past a request's life."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self._expires + 5.0, self._silent)

    def _silent(self) -> None:
        self._watchdog = None
        if self._credit and self._taking:
            logger.warning("pull requests on %s were lost: asking again", self._api)
            self._lost = asyncio.ensure_future(self.reconnected())

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def cancel_running(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _request_more(self) -> None:
        if not self._taking or self._sub is None:
            return
        want = self.capacity - self._busy - self._credit
        if want <= 0:
            return
        self._credit += want
        request = {"batch": want, "expires": int(self._expires * 1e9)}
        await self._nc.publish(self._api, json.dumps(request).encode(), reply=self._inbox)
        self._arm_watchdog()

    async def _on_message(self, msg: Msg) -> None:
        self._arm_watchdog()
        status = msg.headers.get("Status") if msg.headers else None
        if status is not None and not msg.data:
            # 408 request expired / 409 leadership or config change: the rest of that
            # request's batch will not come. 100 is a heartbeat; 404 no messages.
            if status in ("408", "409", "404"):
                pending = msg.headers.get("Nats-Pending-Messages") if msg.headers else None
                self._credit = max(self._credit - int(pending), 0) if pending else 0
                await self._request_more()
            return
        self._credit = max(self._credit - 1, 0)
        if not self._taking or self._busy >= self.capacity:
            # Paused, or more arrived than asked for (requests thought lost were not):
            # hand it back rather than exceed the cap.
            with contextlib.suppress(Exception):
                await msg.nak()
            return
        task = asyncio.create_task(self._run(msg))
        self._running.add(task)
        self._idle.clear()

    async def _run(self, msg: Msg) -> None:
        try:
            await self._handler(msg)
        except Exception:
            logger.exception("handler failed for %s", msg.subject)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._running.discard(task)
            if not self._running:
                self._idle.set()
            async with self._slot_freed:
                self._slot_freed.notify_all()
            await self._request_more()
