"""ListTasks: a page of tasks, newest first, reading only what the page needs.

Two sources, both in creation order:

- the creation index (jetstream/task_index.py): every task, of one session or of
  all, read backwards from the page token's sequence; each entry's record is read
  and kept if it matches the filters. Entries whose record is gone (expired, or a
  create that did not finish) are skipped.
- the inbox (the `waiting` bucket): when only WAITING_FOR_INPUT tasks are asked for,
  the tasks that wait now, however long the history.

A caller confined to a namespace (control_plane/namespaces.py) sees only the tasks of
its namespace's sessions: the others are skipped as filtered ones are.

A page holds at most page_size tasks and MAX_PAGE_BYTES, and reads at most SCAN index
entries: with filters few tasks match, it may hold fewer than page_size (even none)
and a token to go on. Only an empty next_page_token means the end. A token is
``i{n}`` (index entries before sequence n) or ``w{n}`` (inbox tasks created before n).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence

from llama_mesh.control_plane.namespaces import SessionScope
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.lifecycle import WAITING
from llama_mesh.core.names import TaskName
from llama_mesh.core.paging import MAX_PAGE_BYTES, decode_page_token, encode_page_token
from llama_mesh.jetstream import task_index
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import unlist_waiting
from llama_mesh.jetstream.kv_listing import KvListing
from llama_mesh.jetstream.task_index import Entry
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2

SCAN = 512
"""Index entries one ListTasks call reads at most."""


def _cursor(token: str, kind: str) -> int:
    value = decode_page_token(token)
    if not value:
        return 0
    if value[:1] != kind or not value[1:].isdigit():
        raise InvalidArgumentError(
            "page_token is not valid: pass the next_page_token of the previous page, "
            "with the same filters"
        )
    return int(value[1:])


class _Page:
    """Tasks gathered for one reply, within its size and bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tasks: list[resources_pb2.Task] = []
        self.bytes = 0

    @property
    def full(self) -> bool:
        return len(self.tasks) >= self.size

    def add(self, task: resources_pb2.Task) -> bool:
        """Add `task`; False if it does not fit in this reply's bytes."""
        size = task.ByteSize()
        if self.tasks and self.bytes + size > MAX_PAGE_BYTES:
            return False
        self.tasks.append(task)
        self.bytes += size
        return True


async def _records(
    state: MeshState, keys: Sequence[str]
) -> list[tuple[resources_pb2.Task, int] | None]:
    return list(await asyncio.gather(*(state.tasks.find(key) for key in keys)))


async def list_tasks(
    state: MeshState,
    session_id: str | None,
    service: str,
    states: Collection[int],
    size: int,
    token: str,
    scope: SessionScope | None = None,
) -> cp.ListTasksResponse:
    """A page of tasks of one session (or all, with None), newest first; with a
    scope, only those of the sessions it sees."""
    if set(states) == {WAITING}:
        return await _waiting(state, session_id, service, size, _cursor(token, "w"), scope)
    page = _Page(size)
    before = _cursor(token, "i")
    scanned = 0
    while not page.full and scanned < SCAN:
        want = min(max(size - len(page.tasks), 16), SCAN - scanned)
        entries, older = await task_index.newest(
            state.js, state.nc, state.topology, session_id, before=before, want=want
        )
        scanned += len(entries) or want
        stopped = await _fill(state, page, entries, service, states, scope)
        if stopped is not None:
            return _reply(page, f"i{stopped}")
        if not older:
            return _reply(page, "")
        before = older
    return _reply(page, f"i{before}")


async def _fill(
    state: MeshState,
    page: _Page,
    entries: list[Entry],
    service: str,
    states: Collection[int],
    scope: SessionScope | None,
) -> int | None:
    """Add the tasks of `entries` (newest first) that match; if the page fills up
    first, the token's sequence to go on from (None if all were looked at)."""
    wanted = [
        e
        for e in entries
        if (not service or e.service == service)
        and (scope is None or await scope.sees(e.session_id))
    ]
    records = dict(
        zip((e.seq for e in wanted), await _records(state, [e.key for e in wanted]), strict=True)
    )
    for entry in entries:
        if page.full:
            return entry.seq + 1
        record = records.get(entry.seq)
        if record is None:
            continue  # another service or namespace, expired, or a create that did not finish
        task = record[0]
        if task.create_sequence and task.create_sequence != entry.seq:
            continue  # a second entry of a create retried after the window
        if states and task.state not in states:
            continue
        if not page.add(task):
            return entry.seq + 1
    return None


async def _waiting(
    state: MeshState,
    session_id: str | None,
    service: str,
    size: int,
    before: int,
    scope: SessionScope | None,
) -> cp.ListTasksResponse:
    """The inbox: tasks waiting for input, newest first."""
    inbox_bucket = KvListing(state.js, state.topology.bucket("waiting"))
    found = await inbox_bucket.entries(f"{session_id or '*'}.*")
    inbox = []
    for key, value, revision in found:
        entry = json.loads(value)
        if service and entry.get("s") != service:
            continue
        if scope is not None and not await scope.sees(key.partition(".")[0]):
            continue
        created = int(entry.get("c", 0))
        if before and created >= before:
            continue
        inbox.append((created, key, revision))
    inbox.sort(reverse=True)
    page = _Page(size)
    # Read one page's worth at a time: entries whose task no longer waits are skipped.
    while inbox and not page.full:
        chunk, inbox = inbox[: size * 2], inbox[size * 2 :]
        records = await _records(state, [key for _, key, _ in chunk])
        for (created, key, revision), record in zip(chunk, records, strict=True):
            if page.full:
                return _reply(page, f"w{created + 1}")
            if record is None or record[0].state != WAITING:
                # Its task stopped waiting and the process that changed it died first.
                session, _, task_id = key.partition(".")
                await unlist_waiting(state.waiting, TaskName(session, task_id), revision)
                continue
            if not page.add(record[0]):
                return _reply(page, f"w{created + 1}")
    return _reply(page, f"w{inbox[0][0] + 1}" if inbox else "")


def _reply(page: _Page, cursor: str) -> cp.ListTasksResponse:
    return cp.ListTasksResponse(
        tasks=page.tasks, next_page_token=encode_page_token(cursor) if cursor else ""
    )
