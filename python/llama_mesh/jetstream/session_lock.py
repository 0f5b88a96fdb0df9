"""One task at a time per (session, service): the session's Context is read at the
start of a run and written at its end, so overlapping runs would lose updates.

The lock is a KV record holding the queue of task ids: the head holds the lock, and
the waiters behind it are sorted by id (task ids sort by creation time, so they run
in creation order once the queue is contended). The head runs;
the others watch the record until they are the head. A head whose task has finished
or vanished (its replica died after finishing) is dropped by the next waiter; a
head whose replica died mid-task gets it back when its task is delivered again.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from llama_mesh.jetstream.api_errors import WRONG_LAST_SEQUENCE

logger = logging.getLogger(__name__)

IsStale = Callable[[str], Awaitable[bool]]


class Revisions:
    """The revision at which this process last freed each lock, so that taking it
    again is one compare-and-set instead of a read and a write. Bounded: a miss only
    costs the read."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._seen: OrderedDict[str, int] = OrderedDict()

    def get(self, key: str) -> int | None:
        return self._seen.get(key)

    def set(self, key: str, revision: int) -> None:
        self._seen[key] = revision
        self._seen.move_to_end(key)
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)


class SessionLock:
    def __init__(
        self,
        kv: KeyValue,
        key: str,
        task_id: str,
        is_stale: IsStale,
        revisions: Revisions | None = None,
    ) -> None:
        self._kv = kv
        self._key = key
        self._task_id = task_id
        self._is_stale = is_stale
        self._revisions = revisions or Revisions()
        self._revision = 0

    async def _read(self) -> tuple[list[str], int]:
        try:
            entry = await self._kv.get(self._key)
        except KeyNotFoundError:
            return [], 0
        assert entry.revision is not None
        return (json.loads(entry.value) if entry.value else []), entry.revision

    async def _write(self, queue: list[str], revision: int) -> bool:
        # A free lock is an empty queue, never a deleted key: re-creating a deleted
        # key costs nats-py three round trips.
        try:
            if revision == 0:
                self._revision = await self._kv.create(self._key, json.dumps(queue).encode())
            else:
                self._revision = await self._kv.update(
                    self._key, json.dumps(queue).encode(), last=revision
                )
            if not queue:
                # Only a free lock's revision is worth remembering: writing [me] at
                # it is safe, because any change since makes the write fail.
                self._revisions.set(self._key, self._revision)
        except KeyWrongLastSequenceError:
            return False
        except BadRequestError as err:
            # nats-py maps a lost compare-and-set to KeyWrongLastSequenceError on
            # update only; a conditional delete raises the raw API error.
            if err.err_code in WRONG_LAST_SEQUENCE:
                return False
            raise
        return True

    async def acquire(self) -> None:
        """Join the queue and return once this task is at its head."""
        seen = self._revisions.get(self._key)
        if seen is not None and await self._write([self._task_id], seen):
            return  # free since this process let go of it: one round trip
        while True:
            queue, revision = await self._read()
            if not queue:
                if await self._write([self._task_id], revision):
                    return
                continue
            if self._task_id not in queue:
                # The head holds the lock; the waiters behind it are kept in order.
                joined = [*queue[:1], *sorted([*queue[1:], self._task_id])]
                if not await self._write(joined, revision):
                    continue
                queue, revision = await self._read()
            head = queue[0] if queue else self._task_id
            if head == self._task_id:
                self._revision = revision
                return
            if await self._is_stale(head):
                logger.info("session lock %s: dropping finished holder %s", self._key, head)
                await self._write([t for t in queue if t != head], revision)
                continue
            await self._changed(revision)

    async def _changed(self, revision: int) -> None:
        """Wait for the record to change after `revision` (a KV watch, not a poll)."""
        watcher = await self._kv.watch(self._key, include_history=False)
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                if entry.revision is None or entry.revision > revision:
                    return
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    async def release(self) -> None:
        # Usually this task is alone: empty the queue at the revision it wrote.
        if self._revision and await self._write([], self._revision):
            return
        while True:
            queue, revision = await self._read()
            if self._task_id not in queue:
                return
            if await self._write([t for t in queue if t != self._task_id], revision):
                return
