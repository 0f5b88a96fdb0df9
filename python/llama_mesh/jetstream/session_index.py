"""The session index: one small message each time a session's expiry is set (it is
created, or renewed as tasks are created in it), in that order.

    stream {P}_SESSIONS    subject {p}.sessions.{namespace}.{agent}  (_ for none)
    message  {"s": session id, "e": the expire_time it set, in ns (0: none)}

ListSessions reads it a page at a time with batched direct gets (direct_get.py, as
ListTasks reads the task index), so a page reads the entries it returns and not the
sessions bucket, whose every key is a subject the server would match a filter against.
A caller confined to a namespace reads that namespace's subjects only. The agent is
the session's `agent_id` label (the Agents API's sessions): an agent's sessions are
one filtered read (`{p}.sessions.*.{agent}`), whatever the number of others.

An entry is live while its session's record carries the expiry it names. The others
are dead and skipped; none makes pages slow for long:

- each entry carries its session's TTL, so it leaves with the session it indexes;
- a renewal deletes the entry of the expiry it replaces (found by the time it was
  written); one it does not find, the reader that finds it deletes (the record's
  expiry is later), as it deletes one whose record is gone (a deleted session) once
  `GRACE` has passed (before that, its create may still be writing);
- a write that did not take (the session existed, or expired meanwhile) deletes the
  entry it made.

The entry is written before the record it indexes: a crash in between leaves a dead
entry, never a session the listing cannot see.

An earlier version wrote entries on `{p}.sessions.{namespace}`, without the agent: a
control plane that finds one at start indexes every session again and deletes those.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError as JsNotFoundError

from llama_mesh.jetstream.direct_get import Stored, direct_batch
from llama_mesh.jetstream.errors import store_errors
from llama_mesh.jetstream.kv_listing import KvListing
from llama_mesh.jetstream.kv_ttl import msg_ttl
from llama_mesh.jetstream.topology import Topology
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)

GRACE = 60.0
"""Seconds an entry whose session record is missing is left alone: its create may
still be on its way to the bucket."""
AGENT_LABEL = "agent_id"
"""The label that makes a session one of an agent's (set by the Agents API)."""
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
CLOCK_SLACK = 5.0
"""Seconds a renewal looks back for the entry it replaces beyond when it was due to be
written (the control plane's and the server's clocks may differ)."""


@dataclass(frozen=True)
class Entry:
    """One write of a session's expiry."""

    seq: int
    session_id: str
    expires: int
    written: float
    pending: int
    """How many entries (on the subject read) follow it."""


def expires(session: resources_pb2.Session) -> int:
    """The session's expire_time in nanoseconds (0: none), as entries name it."""
    return session.expire_time.ToNanoseconds() if session.HasField("expire_time") else 0


def agent_of(session: resources_pb2.Session) -> str:
    """The agent whose session it is ("": none; a label that cannot be an agent id is
    none's)."""
    agent = session.labels.get(AGENT_LABEL, "")
    return agent if _TOKEN.fullmatch(agent) else ""


def _subject(topology: Topology, session: resources_pb2.Session) -> str:
    return topology.session_subject(session.namespace, agent_of(session))


async def add(
    js: JetStreamContext, topology: Topology, session: resources_pb2.Session, ttl: float | None
) -> int:
    """Index `session` (its name, namespace, agent and expire_time) before its record
    is written with that expiry; the entry's sequence."""
    session_id = session.name.partition("/")[2]
    entry = {"s": session_id, "e": expires(session)}
    subject = _subject(topology, session)
    with store_errors(f"indexing session {session.name}"):
        ack = await js.publish(
            subject,
            json.dumps(entry, separators=(",", ":")).encode(),
            # Two control planes indexing one write (the upgrade's backfill) make one
            # entry. The subject is in the id: an earlier layout's entry of the same
            # write is not this one.
            headers={"Nats-Msg-Id": f"{subject}:{session_id}@{entry['e']}"},
            msg_ttl=msg_ttl(ttl),
        )
    return int(ack.seq)


async def remove(js: JetStreamContext, topology: Topology, seq: int) -> None:
    """Delete the entry at `seq` (dead); gone already is fine."""
    with contextlib.suppress(JsNotFoundError), store_errors("trimming the session index"):
        await js.delete_msg(topology.session_stream, seq)


async def trim(
    nc: NatsClient,
    js: JetStreamContext,
    topology: Topology,
    previous: resources_pb2.Session,
    ttl: float,
) -> None:
    """Delete the entry of `previous` (the record before a renewal that supersedes it):
    written about `ttl` before the expiry it names. If it is not among the first of
    its namespace written since then, readers delete it when they reach it."""
    old = expires(previous)
    if not old:
        return
    written = old / 1e9 - ttl - CLOCK_SLACK
    found = await direct_batch(
        nc,
        topology.session_stream,
        subject=_subject(topology, previous),
        start=0,
        start_time=written,
        batch=64,
    )
    session_id = previous.name.partition("/")[2]
    for stored in found:
        entry = _entry(stored)
        if entry.session_id == session_id and entry.expires == old:
            await remove(js, topology, entry.seq)
            return


def _entry(stored: Stored) -> Entry:
    data = json.loads(stored.data)
    return Entry(
        stored.seq, str(data["s"]), int(data.get("e", 0)), stored.stored_at, stored.pending
    )


async def after(
    nc: NatsClient,
    topology: Topology,
    namespace: str | None,
    seq: int,
    batch: int,
    agent: str | None = None,
) -> list[Entry]:
    """Up to `batch` entries after sequence `seq`, oldest first: of one namespace
    ("" for sessions of none; None: any) and one agent (the same)."""
    everyone = namespace is None and agent is None
    subject = None if everyone else topology.sessions_of(namespace, agent)
    found = await direct_batch(
        nc, topology.session_stream, subject=subject, start=seq + 1, batch=batch
    )
    return [_entry(s) for s in found]


def is_live(entry: Entry, session: resources_pb2.Session | None) -> bool:
    return session is not None and expires(session) == entry.expires


def is_dead(entry: Entry, session: resources_pb2.Session | None) -> bool:
    """Whether `entry` will never be live again (the reader may delete it): its session
    was renewed since, or is gone and the entry is older than GRACE."""
    if session is None:
        return time.time() - entry.written > GRACE
    return expires(session) > entry.expires


async def backfill(nc: NatsClient, js: JetStreamContext, topology: Topology) -> int:
    """Index the sessions of a deployment written before the index existed (when the
    index never held anything) or before it named the agent (when it holds an entry
    of that layout, deleted then); how many were indexed."""
    info = await js.stream_info(topology.session_stream)
    earlier = f"{topology.prefix}.sessions.*"
    if info.state.last_seq and not await direct_batch(
        nc, topology.session_stream, subject=earlier, start=1, batch=1
    ):
        return 0
    listing = KvListing(js, topology.bucket("sessions"))
    records = sorted(await listing.entries(">"), key=lambda found: found[2])
    now = time.time()
    for _, value, _ in records:
        session = resources_pb2.Session.FromString(value)
        left = max(expires(session) / 1e9 - now, 1.0) if session.HasField("expire_time") else None
        await add(js, topology, session, left)
    # Listed twice until now (a reader of everyone's sees both layouts), once from now.
    with contextlib.suppress(JsNotFoundError), store_errors("trimming the session index"):
        await js.purge_stream(topology.session_stream, subject=earlier)
    if records:
        logger.info("session index: %d sessions of an earlier version indexed", len(records))
    return len(records)
