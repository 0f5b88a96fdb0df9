"""Following one task's events as the event stream stores them, without a consumer.

The event stream republishes every event it stores (``{p}.events.>`` to
``{p}.live.>``, topology.py) with its stream sequence and the sequence of the one
stored before it on the same subject (the server's ``Nats-Sequence`` and
``Nats-Last-Sequence`` headers). A follower listens on its task's live subjects with
a plain subscription, so that a streamed turn costs the server a subscription, not a
consumer to create, feed and expire (~0.9 ms of nats-server CPU each).

Plain subscriptions lose messages when the connection drops (or a slow reader's are
dropped), so every guarantee rests on the sequences, and what is missing is read
from the stream (an ordered consumer, only then):

- in order, none twice: an event at or below the last one handed on is dropped;
- none lost: an event of the task's ``.e`` subject says which came before it there;
  if that one was not handed on, the events between are read first. The last event
  (``.end``) names only its own subject's, so one read of the stream says whether
  an event came between (none if the two sequences are adjacent);
- after a reconnect, or once the stream has a new leader, what was stored meanwhile is
  read;
- a live message lost with neither (a route between cluster nodes that broke and came
  back), when no later one shows the gap (a task's last event, or the last before it
  waits for input): a follower that handed on nothing for `idle_check` seconds asks the
  stream, in one read, whether it holds a newer event (what an ordered consumer's idle
  heartbeat did; a follower that is handed events asks nothing);
- from a sequence on (`after`), or with what the task published before the follower
  started (`history`; subscribe first, then read: an event in both is handed on once).

    async with LiveEvents.following(state) as live:     # as long as the process
        async with live.follow(task_id, history=False, stop=shutting_down) as events:
            ...                              # create the task
            async for event in events:       # ends once `stop` is set
                ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Final

from nats.aio.msg import Msg
from nats.errors import BadSubscriptionError
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError

from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.messages_so_far import messages_so_far
from llama_mesh.jetstream.topology import Topology

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredEvent:
    """One stored event of the task: its stream sequence, its envelope (serialized),
    whether it is the task's last (``.end``), and whether it was the task's newest
    when it was read (nothing stored after it yet)."""

    seq: int
    data: bytes
    final: bool
    newest: bool


class _Marker:
    """A queue entry that is not a message."""


_CATCH_UP: Final = _Marker()  # read what the stream stored meanwhile
_STOP: Final = _Marker()
_IDLE: Final = _Marker()  # nothing handed on for a while: is a newer one stored?

IDLE_CHECK = 5.0
"""Seconds a follower hands on nothing before it asks the stream for a newer event."""


class LiveEvents:
    """The task event followers of one process: one reconnect hook and one
    subscription to the event stream's leader changes for all of them."""

    def __init__(self, state: MeshState, *, idle_check: float = IDLE_CHECK) -> None:
        self.state = state
        self.idle_check = idle_check
        self._open: set[asyncio.Queue[Msg | _Marker]] = set()

    @classmethod
    @contextlib.asynccontextmanager
    async def following(
        cls, state: MeshState, *, idle_check: float = IDLE_CHECK
    ) -> AsyncIterator[LiveEvents]:
        """Followers that catch up after a reconnect, and after the event stream
        changes leader (a leader that stopped between storing an event and
        republishing it left one unannounced, perhaps a task's last). An update of the
        stream that drops its republish is undone."""
        await _check_republished(state)
        live = cls(state, idle_check=idle_check)
        state.reconnect_hooks.append(live.catch_up)

        async def on_leader(_: Msg) -> None:
            await live.catch_up()

        async def on_updated(_: Msg) -> None:
            # A control plane of an earlier version that starts during a rolling
            # upgrade updates the stream to its own config, without the republish:
            # followers would hear nothing more, not even a task's last event.
            if await _restore_republish(state):
                await live.catch_up()  # what was stored without it

        advisory = "$JS.EVENT.ADVISORY.STREAM"
        stream = state.topology.event_stream
        advisories = [
            await state.nc.subscribe(f"{advisory}.LEADER_ELECTED.{stream}", cb=on_leader),
            await state.nc.subscribe(f"{advisory}.UPDATED.{stream}", cb=on_updated),
        ]
        try:
            yield live
        finally:
            state.reconnect_hooks.remove(live.catch_up)
            for sub in advisories:
                with contextlib.suppress(BadSubscriptionError):  # the connection is gone
                    await sub.unsubscribe()

    async def catch_up(self) -> None:
        """Have every follower read what the stream stored that it may have missed."""
        for queue in self._open:
            queue.put_nowait(_CATCH_UP)

    @contextlib.asynccontextmanager
    async def follow(
        self, task_id: str, *, after: int = 0, history: bool, stop: asyncio.Event
    ) -> AsyncIterator[AsyncIterator[StoredEvent]]:
        """The task's events after sequence `after`, in order, as they are stored; those
        stored before this call too if `history` (a caller that enters this before the
        task exists needs none). The iteration ends once `stop` is set."""
        topology = self.state.topology
        queue: asyncio.Queue[Msg | _Marker] = asyncio.Queue()

        async def deliver(msg: Msg) -> None:
            queue.put_nowait(msg)

        sub = await self.state.nc.subscribe(topology.live_task_events(task_id), cb=deliver)
        self._open.add(queue)
        follower = _Follower(self.state, task_id, after, queue)
        # One watcher per follower ends it at `stop` (racing each message against
        # `stop` cost a task per message), and has it check when it is idle.
        watcher = asyncio.create_task(_watch(stop, follower, self.idle_check))
        events = follower.events(history=history)
        try:
            yield events
        finally:
            await events.aclose()  # a read of the stream it was in ends with it
            self._open.discard(queue)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            with contextlib.suppress(BadSubscriptionError):  # the connection is gone
                await sub.unsubscribe()


async def _check_republished(state: MeshState) -> None:
    """FailedPreconditionError unless the event stream republishes what it stores where
    followers listen: without it every follower would wait for ever."""
    topology = state.topology
    info = await state.js.stream_info(topology.event_stream)
    if not _republishes(info.config, topology):
        # Whatever took it away (JetStream refused this version's whole config, an
        # older control plane started meanwhile, an edit by hand), only the republish
        # is missing, and an edit of that alone gives it back.
        source, dest = str(topology.event_republish.src), str(topology.event_republish.dest)
        edit = shlex.join(
            [
                "nats",
                "stream",
                "edit",
                topology.event_stream,
                "--republish-source",
                source,
                "--republish-destination",
                dest,
            ]
        )
        raise FailedPreconditionError(
            f"stream {topology.event_stream} does not republish {source} on {dest}, where "
            "event streams and streamed turns follow their tasks: stop every control plane "
            "of an earlier version (one takes the republish away as it starts), give "
            f"the stream that republish ({edit}) and start again"
        )


def _republishes(config: js_api.StreamConfig, topology: Topology) -> bool:
    republish, wanted = config.republish, topology.event_republish
    return republish is not None and (republish.src, republish.dest) == (
        wanted.src,
        wanted.dest,
    )


async def _restore_republish(state: MeshState) -> bool:
    """Give the event stream its republish again if an update took it away; whether
    it did."""
    topology = state.topology
    info = await state.js.stream_info(topology.event_stream)
    if _republishes(info.config, topology):
        return False
    config = info.config
    config.republish = topology.event_republish
    try:
        await state.js.update_stream(config)
    except APIError as err:
        logger.error(
            "stream %s was updated without its republish and cannot have it again (%s): "
            "turn and event streams wait for their events",
            topology.event_stream,
            err,
        )
        return False
    logger.warning(
        "stream %s was updated without its republish (a control plane of an earlier "
        "version started?); given it again",
        topology.event_stream,
    )
    return True


async def _watch(stop: asyncio.Event, follower: _Follower, idle_check: float) -> None:
    """Ends the follower once `stop` is set; until then, has it ask the stream for a
    newer event after each `idle_check` seconds in which it handed none on."""
    last = follower.last
    while True:
        try:
            async with asyncio.timeout(idle_check):
                await stop.wait()
        except TimeoutError:
            if follower.last == last and follower.queue.empty():
                follower.queue.put_nowait(_IDLE)
            last = follower.last
            continue
        follower.queue.put_nowait(_STOP)
        return


class _Follower:
    def __init__(
        self, state: MeshState, task_id: str, after: int, queue: asyncio.Queue[Msg | _Marker]
    ) -> None:
        self.state = state
        self.task_id = task_id
        self.last = after  # the sequence of the last event handed on
        self.queue = queue

    async def events(self, *, history: bool) -> AsyncGenerator[StoredEvent]:
        if history:
            async with contextlib.aclosing(self._stored(before=None)) as stored:
                async for event in stored:
                    yield event
        while True:
            msg = await self.queue.get()
            if msg is _STOP:
                return
            # A read of the stream is a consumer; one look (a message get) says
            # whether there is anything to read: after an election every follower
            # of every control plane would otherwise make one at once.
            if isinstance(msg, _Marker) and not await self._stored_before(None):
                continue
            if isinstance(msg, _Marker):  # _CATCH_UP or _IDLE, a newer one stored
                async with contextlib.aclosing(self._stored(before=None)) as stored:
                    async for event in stored:
                        yield event
                continue
            headers = msg.headers or {}
            seq = int(headers["Nats-Sequence"])
            if seq <= self.last:
                continue  # read from the stream already
            final = msg.subject.endswith(".end")
            if final:
                missed = seq != self.last + 1 and await self._stored_before(seq)
            else:
                missed = int(headers["Nats-Last-Sequence"]) > self.last
            if missed:
                async with contextlib.aclosing(self._stored(before=seq)) as stored:
                    async for event in stored:
                        yield event
            self.last = seq
            yield StoredEvent(seq, msg.data, final, newest=True)

    async def _stored_before(self, seq: int | None) -> bool:
        """Whether the stream holds an event of the task between the last one handed
        on and `seq` (None: after the last one handed on; one read of the stream's
        leader)."""
        topology = self.state.topology
        try:
            first = await self.state.js.get_msg(
                topology.event_stream,
                seq=self.last + 1,
                subject=topology.task_events(self.task_id),
                next=True,
            )
        except NotFoundError:  # expired meanwhile: nothing to read
            return False
        return first.seq is not None and (seq is None or first.seq < seq)

    async def _stored(self, *, before: int | None) -> AsyncGenerator[StoredEvent]:
        """The task's stored events after the last one handed on (and before sequence
        `before`, which the caller holds)."""
        topology = self.state.topology
        if before is not None:
            logger.info("task %s: events %d-%d missed live; read", self.task_id, self.last, before)
        async with messages_so_far(
            self.state.js,
            topology.task_events(self.task_id),
            stream=topology.event_stream,
            deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
            config=js_api.ConsumerConfig(opt_start_seq=self.last + 1),
        ) as messages:
            async for msg in messages:
                seq = msg.metadata.sequence.stream
                if before is not None and seq >= before:
                    return
                self.last = seq
                yield StoredEvent(
                    seq,
                    msg.data,
                    final=msg.subject.endswith(".end"),
                    newest=before is None and msg.metadata.num_pending == 0,
                )
