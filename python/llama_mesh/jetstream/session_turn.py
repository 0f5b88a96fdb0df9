"""Whose turn it is to run a service in a session, and the state a run leaves there:
one record per (session, service) fences every change to the session's workflow state.

Delivery is at least once; the effect of a run on its session is exactly once. The
record (bucket `session_state`, key `{session}.{service}`, JSON) holds

    turn       the attempt that may change the state: {"task", "attempt", "replica"},
               or null
    cursor     the creation sequence of the last task that took its turn
    committed  the last run's outcome: {"task", "attempt", "result"}
    context    the workflow's saved Context

- An attempt takes its turn by writing `turn` with compare-and-set; the revision that
  write returns is its fence (``Held.revision``).
- It commits by writing its new Context and its outcome together, with
  compare-and-set on that revision, giving up the turn in the same write. A stale
  attempt (its replica was stopped past the ack wait, the task ran elsewhere, more
  runs followed) finds the revision moved: its write is refused and it stops
  (``Superseded``), recording nothing.
- An attempt that finds its own task in `committed` (the replica that committed died
  before recording the result) takes that outcome instead of running again
  (``Committed``). The next task cannot take the turn until that task's record is
  final, so the outcome is still there when the redelivery comes.
- Turns follow the creation sequence (jetstream/task_index.py), not ids and not the
  order of delivery: a task waits for every earlier task of its service in the
  session to finish, and for the task holding the turn. A redelivered attempt of the
  task holding the turn takes it over (the older attempt's fence is void). The turn
  names the replica too: a task delivered again to another replica while it waited
  for its turn (its RUNNING not yet recorded) has the same attempt number there, and
  the attempt taken over must not give back the turn its successor holds.
- A child task (a nested call: a tool, an inner workflow) takes no turn: calls run in
  parallel (an agent's tool calls do). It runs on the saved state and commits its
  Context and outcome only if nobody held the turn when it read the state and nothing
  changed it since (compare-and-set at the revision it read); otherwise its Context
  changes are dropped and its result stands.

Waiting for a task is waiting for its final event (a plain NATS subscription), not a
poll; after NATS reconnects, the wait reads the task again (an event published while
the connection was away reached no subscription). The caller may give up its
delivery slot while it waits (``while_waiting``), so that later tasks waiting for an
earlier one never keep that one from being delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

from llama_mesh.core.errors import FailedPreconditionError, ResourceExhaustedError
from llama_mesh.core.failpoints import failpoint
from llama_mesh.core.lifecycle import is_final
from llama_mesh.core.limits import MAX_CONTEXT_BYTES
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream import task_index
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.errors import store_errors
from llama_mesh.jetstream.kv_ttl import msg_ttl, update_with_ttl
from llama_mesh.telemetry import tracing

logger = logging.getLogger(__name__)

Record = dict[str, Any]
WhileWaiting = Callable[[], contextlib.AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class Held:
    """The turn, held by one attempt: the fence of its commit and the saved Context.
    A child's (`turn` False) holds no turn: it may commit at `revision` if that is
    not 0 and nothing changed since."""

    key: str
    revision: int
    context: dict[str, Any] | None
    record: Record
    ttl: float | None = None  # how long the record is kept once idle (the session's)
    turn: bool = True


@dataclass(frozen=True)
class Committed:
    """The task's outcome was committed by an earlier attempt: its result (JSON), and
    which attempt that was."""

    result: Any
    attempt: int


class Superseded(Exception):
    """A later attempt of the same task holds the turn: this one must stop and record
    nothing (its replica was gone long enough for the task to be delivered again)."""


class ContextTooLarge(ResourceExhaustedError):
    """The workflow's Context is over MAX_CONTEXT_BYTES: it cannot be saved."""


@contextlib.asynccontextmanager
async def _no_release() -> AsyncIterator[None]:
    yield


def _holder(record: Record) -> tuple[str, int, str] | None:
    turn = record.get("turn")
    if not turn:
        return None
    return str(turn["task"]), int(turn["attempt"]), str(turn.get("replica", ""))


class _Known:
    """The records this replica last read or wrote, by key: taking a turn again is then
    one compare-and-set at the revision known (a write that fails if anything changed
    since), not a read and a write. Bounded; large Contexts are not kept."""

    def __init__(self, size: int = 1024, max_bytes: int = 64 * 1024) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._records: OrderedDict[str, tuple[Record, int]] = OrderedDict()

    def get(self, key: str) -> tuple[Record, int] | None:
        return self._records.get(key)

    def put(self, key: str, record: Record, revision: int, size: int) -> None:
        if size > self._max_bytes or not revision:
            self._records.pop(key, None)
            return
        self._records[key] = (record, revision)
        self._records.move_to_end(key)
        if len(self._records) > self._size:
            self._records.popitem(last=False)

    def drop(self, key: str) -> None:
        self._records.pop(key, None)


class SessionTurns:
    """Turns of one service's runs in its sessions."""

    def __init__(self, state: MeshState, service: str, replica_id: str = "") -> None:
        self.state = state
        self.service = service
        self.replica_id = replica_id  # whose attempts hold the turns taken here
        self._waits: set[asyncio.Event] = set()  # of the runs waiting for a task (_finished)
        self._known = _Known()

    def key(self, name: TaskName) -> str:
        return f"{name.session_id}.{self.service}"

    def _turn(self, name: TaskName, attempt: int) -> Record:
        return {"task": name.task_id, "attempt": attempt, "replica": self.replica_id}

    async def _read(self, key: str) -> tuple[Record, int]:
        try:
            with tracing.span("context.load"):
                entry = await self.state.session_state.get(key)
        except KeyNotFoundError:
            return {}, 0
        except KeyDeletedError as deleted:  # recreated over its deletion marker
            return {}, deleted.entry.revision if deleted.entry is not None else 0
        # An expired record leaves a marker without a value: the state starts afresh.
        record = json.loads(entry.value) if entry.value else {}
        self._known.put(key, record, entry.revision or 0, len(entry.value or b""))
        return record, entry.revision or 0

    async def _write(self, key: str, record: Record, revision: int, ttl: float | None) -> int:
        """Write `record` if the key is still at `revision`; its new revision, or 0."""
        data = json.dumps(record, separators=(",", ":")).encode()
        written = await self._put(key, data, revision, ttl)
        if written:
            self._known.put(key, record, written, len(data))
        else:
            self._known.drop(key)
        return written

    async def _put(self, key: str, data: bytes, revision: int, ttl: float | None) -> int:
        try:
            with store_errors(f"saving the session state {key!r}"):
                if revision == 0:
                    return await self.state.session_state.create(key, data, msg_ttl=msg_ttl(ttl))
                return await update_with_ttl(
                    self.state.js,
                    self.state.topology.bucket("session_state"),
                    key,
                    data,
                    last=revision,
                    ttl=ttl,
                )
        except KeyWrongLastSequenceError:
            return 0

    async def _active(self, session_id: str, task_id: str) -> bool:
        found = await self.state.tasks.find(f"{session_id}.{task_id}")
        return found is not None and not is_final(found[0].state)

    async def take(
        self,
        name: TaskName,
        attempt: int,
        create_sequence: int,
        *,
        child: bool = False,
        while_waiting: WhileWaiting = _no_release,
        ttl: float | None = None,
        meanwhile: Callable[[], None] | None = None,
    ) -> Held | Committed:
        """Wait for attempt `attempt` of task `name` to have the turn, and take it.

        A `child` takes no turn (see the module's doc). `meanwhile` is called when the
        turn is about to be taken, so that the caller's own write (RUNNING) goes
        alongside."""
        key = self.key(name)
        if child:
            return await self._read_beside(name, attempt, ttl)
        known = self._known.get(key)
        if known is not None:
            fast = await self._take_known(name, attempt, create_sequence, known, ttl, meanwhile)
            if fast is not None:
                return fast
        while True:
            record, revision = await self._read(key)
            committed = record.get("committed")
            if committed and committed.get("task") == name.task_id:
                return Committed(committed.get("result"), int(committed.get("attempt", attempt)))
            holder = _holder(record)
            if holder is not None and holder[0] == name.task_id:
                if holder[1] > attempt:
                    raise Superseded(f"attempt {holder[1]} of {name} holds the turn")
                # An earlier attempt of this task, or the same one delivered again to
                # another replica: taken over.
                blocker = None
            elif holder is not None and await self._active(name.session_id, holder[0]):
                blocker = holder[0]
            else:
                blocker = None
            if blocker is None:
                blocker = await self._earlier(name, int(record.get("cursor", 0)), create_sequence)
            if blocker is not None:
                async with while_waiting():
                    await self._finished(name.session_id, blocker)
                continue
            taken = dict(record)
            taken["turn"] = self._turn(name, attempt)
            taken["cursor"] = max(int(record.get("cursor", 0)), create_sequence)
            if meanwhile is not None:
                meanwhile()
                meanwhile = None
            fence = await self._write(key, taken, revision, ttl)
            if fence:
                return Held(key, fence, record.get("context"), taken, ttl)

    async def _read_beside(
        self, name: TaskName, attempt: int, ttl: float | None
    ) -> Held | Committed:
        """A child's view of the state: no turn; its commit is allowed only if nobody
        held the turn when it read and nothing changes before it commits."""
        key = self.key(name)
        record, revision = await self._read(key)
        committed = record.get("committed")
        if committed and committed.get("task") == name.task_id:
            return Committed(committed.get("result"), int(committed.get("attempt", attempt)))
        fence = revision if revision and not record.get("turn") else 0
        return Held(key, fence, record.get("context"), record, ttl, turn=False)

    async def _take_known(
        self,
        name: TaskName,
        attempt: int,
        create_sequence: int,
        known: tuple[Record, int],
        ttl: float | None,
        meanwhile: Callable[[], None] | None,
    ) -> Held | None:
        """The turn of a session this replica saw free last: one compare-and-set at the
        revision it knows, while the creation index is read for earlier tasks; None
        if either says otherwise (then the caller takes the long way)."""
        record, revision = known
        if record.get("turn") or (record.get("committed") or {}).get("task") == name.task_id:
            return None
        key = self.key(name)
        taken = {**record, "turn": self._turn(name, attempt)}
        taken["cursor"] = max(int(record.get("cursor", 0)), create_sequence)
        if meanwhile is not None:
            meanwhile()
        fence, earlier = await asyncio.gather(
            self._write(key, taken, revision, ttl),
            self._earlier(name, int(record.get("cursor", 0)), create_sequence),
        )
        if not fence:
            return None
        held = Held(key, fence, record.get("context"), taken, ttl)
        if earlier is not None:
            # An earlier task has not finished: its turn first.
            await self.give_back(name, attempt, held)
            return None
        return held

    async def _earlier(self, name: TaskName, cursor: int, mine: int) -> str | None:
        """An earlier task of this service in the session that has not finished."""
        after = cursor
        while after < mine:
            entries = await task_index.first_after(
                self.state.nc, self.state.topology, name.session_id, after
            )
            if not entries:
                return None
            for entry in entries:
                if entry.seq >= mine:
                    return None
                if (
                    entry.service == self.service
                    and not entry.child
                    and await self._active(name.session_id, entry.task_id)
                ):
                    return entry.task_id
            after = entries[-1].seq
        return None

    async def _finished(self, session_id: str, task_id: str) -> None:
        """Return once the task has finished (its final event), or is gone."""
        subject = self.state.topology.final_event_subject(task_id)
        wake = asyncio.Event()
        heard = False

        async def on_final(msg: Msg) -> None:
            nonlocal heard
            failpoint("session_turn.final_heard")
            heard = True
            wake.set()

        sub = await self.state.nc.subscribe(subject, cb=on_final, max_msgs=1)
        self._waits.add(wake)
        try:
            # Subscribed first: a final event published from now on is not missed,
            # unless NATS was away meanwhile (then ``recheck_waits`` wakes this).
            while not heard:
                wake.clear()
                if not await self._active(session_id, task_id):
                    return
                logger.info("session %s: waiting for task %s to finish", session_id, task_id)
                failpoint("session_turn.waiting")
                with tracing.span("session.wait", **{"llama_mesh.waits_for": task_id}):
                    await wake.wait()
        finally:
            self._waits.discard(wake)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def recheck_waits(self) -> None:
        """After NATS reconnected: a final event published while it was away reached no
        subscription, so every wait for one reads its task's record again."""
        for wake in self._waits:
            wake.set()

    async def commit(
        self,
        name: TaskName,
        attempt: int,
        held: Held,
        context: dict[str, Any],
        result: Any,
    ) -> Committed | None:
        """Save the run's Context and outcome and give up the turn, in one write fenced
        by the turn's revision. None once committed; the outcome another attempt of
        the task committed first, if one did; Superseded if neither."""
        record = dict(held.record)
        record["turn"] = None
        record["committed"] = {"task": name.task_id, "attempt": attempt, "result": result}
        record["context"] = context
        size = len(json.dumps(context, separators=(",", ":")).encode())
        if size > MAX_CONTEXT_BYTES:
            raise ContextTooLarge(
                f"the workflow's Context is {size} bytes, over the limit of "
                f"{MAX_CONTEXT_BYTES} bytes: keep large data out of the Context"
            )
        failpoint("session_turn.commit")
        if not held.turn:
            # A child: only over the state it read, and only if nobody held the turn.
            if not held.revision or not await self._write(
                held.key, record, held.revision, held.ttl
            ):
                logger.info("%s: its Context changes are dropped (the state moved on)", name)
            return None
        if await self._write(held.key, record, held.revision, held.ttl):
            failpoint("session_turn.committed")
            return None
        current, revision = await self._read(held.key)
        if not current and await self._write(held.key, record, revision, held.ttl):
            # The record expired while the run went on (longer than the session's
            # ttl), and nobody took the turn since: nothing was written over.
            return None
        committed = current.get("committed")
        if committed and committed.get("task") == name.task_id:
            return Committed(committed.get("result"), int(committed.get("attempt", attempt)))
        raise Superseded(f"attempt {attempt} of {name} lost its turn before it committed")

    async def seed(self, session_id: str, context: dict[str, Any], ttl: float | None) -> None:
        """Start a new session's state with `context` (a forked conversation), before
        any run there: FAILED_PRECONDITION if the session has a state already."""
        key = f"{session_id}.{self.service}"
        if not await self._write(key, {"context": context}, 0, ttl):
            raise FailedPreconditionError(
                f"session {session_id!r} has a saved state already: it cannot be seeded"
            )

    async def give_back(self, name: TaskName, attempt: int, held: Held) -> None:
        """Give up the turn without a commit (the run failed, or stops), if still held."""
        if not held.turn:
            return
        revision = held.revision
        record = held.record
        while True:
            if _holder(record) != (name.task_id, attempt, self.replica_id):
                return
            cleared = {**record, "turn": None}
            if await self._write(held.key, cleared, revision, held.ttl):
                return
            record, revision = await self._read(held.key)
            if not revision:
                return
