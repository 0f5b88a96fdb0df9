"""The creation index: one small message per task created, in creation order.

    stream {P}_CREATED    subject {p}.created.{session}
    message  {"t": task id, "s": service, "c": 1 if a child task}

JetStream numbers a stream's messages in the order it stores them, and that number
is the task's creation sequence (Task.create_sequence): a task created after another
has a higher one, whatever their ids. A retried create gets the same number
(Nats-Msg-Id is the task's key). It orders what the index serves:

- listings, newest first, reading only the page they return (``newest``): the
  messages of one session, or of all, backwards from a sequence;
- the session's turns: a run of a service in a session waits for the ones created
  before it (``first_after``, from the worker's session_turn).

Each message lives as long as its session may (a per-message TTL), so the index does
not grow with history. A message whose task record is gone (it expired, or its create
did not finish) is skipped by its readers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError as JsNotFoundError

from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.direct_get import Stored, count_from, direct_batch
from llama_mesh.jetstream.errors import store_errors
from llama_mesh.jetstream.journal import task_key
from llama_mesh.jetstream.topology import Topology


@dataclass(frozen=True)
class Entry:
    """One task in the index."""

    seq: int
    session_id: str
    task_id: str
    service: str
    child: bool

    @property
    def key(self) -> str:
        """The key of its record in the tasks bucket."""
        return f"{self.session_id}.{self.task_id}"


async def add(
    js: JetStreamContext,
    topology: Topology,
    name: TaskName,
    service: str,
    *,
    child: bool,
    ttl: float,
) -> int:
    """Index a task being created; its creation sequence."""
    entry = {"t": name.task_id, "s": service, **({"c": 1} if child else {})}
    with store_errors(f"indexing task {name}"):
        ack = await js.publish(
            topology.created_subject(name.session_id),
            json.dumps(entry, separators=(",", ":")).encode(),
            headers={"Nats-Msg-Id": task_key(name)},
            msg_ttl=max(int(ttl), 1),
        )
    return int(ack.seq)


def _entry(stored: Stored) -> Entry:
    data = json.loads(stored.data)
    session_id = stored.subject.rpartition(".")[2]
    return Entry(stored.seq, session_id, str(data["t"]), str(data["s"]), bool(data.get("c")))


async def first_after(
    nc: NatsClient, topology: Topology, session_id: str, after: int, batch: int = 8
) -> list[Entry]:
    """The session's first `batch` entries after sequence `after`, oldest first."""
    found = await direct_batch(
        nc,
        topology.created_stream,
        subject=topology.created_subject(session_id),
        start=after + 1,
        batch=batch,
    )
    return [_entry(s) for s in found]


async def newest(
    js: JetStreamContext,
    nc: NatsClient,
    topology: Topology,
    session_id: str | None,
    *,
    before: int,
    want: int,
    scan: int = 1 << 20,
) -> tuple[list[Entry], int]:
    """Up to `want` entries of one session (or of all, with None) created before
    sequence `before` (0: from the newest), newest first, and the sequence to ask
    before for the next ones (0 when there are none).

    It reads backwards in windows of sequences, counting the window's entries
    before it reads them (each message says how many follow it), so it reads only
    what it returns; a session's entries are sparse among all, so its windows grow
    until they hold enough or `scan` sequences were looked at.
    """
    stream = topology.created_stream
    subject = topology.created_subject(session_id) if session_id else topology.created_all
    if before:
        cursor = before
        after_cursor = (await count_from(nc, stream, subject, cursor))[1]
    else:
        last = await _last_seq(js, stream, session_id, subject)
        if last == 0:
            return [], 0
        cursor, after_cursor = last + 1, 0
    window = max(want * (4 if session_id else 1), 16)
    scanned = 0
    while True:
        start = max(cursor - window, 1)
        first, from_first = await count_from(nc, stream, subject, start)
        inside = from_first - after_cursor if first and first < cursor else 0
        scanned += cursor - start
        if inside >= want or start == 1 or scanned >= scan:
            break
        window *= 4
    if inside == 0:
        return [], (start if start > 1 else 0)
    stored = await direct_batch(nc, stream, subject=subject, start=first, batch=inside)
    entries = [_entry(s) for s in stored if s.seq < cursor][::-1][:want]
    more = len(entries) < inside or start > 1
    return entries, (entries[-1].seq if more else 0)


async def _last_seq(js: JetStreamContext, stream: str, session_id: str | None, subject: str) -> int:
    """The sequence of the newest entry (of the session), 0 if none."""
    if session_id is None:
        info = await js.stream_info(stream)
        return int(info.state.last_seq) if info.state.messages else 0
    try:
        return int((await js.get_last_msg(stream, subject, direct=True)).seq or 0)
    except JsNotFoundError:
        return 0
