"""ListSessions: a page of sessions in the order they last changed (were created or
renewed), oldest first, reading only what the page needs.

It reads the session index (jetstream/session_index.py) forward from the page token's
sequence, a batch at a time, and each entry's session record: an entry is listed if
its record still carries the expiry it names. A session renewed while a caller pages
moves to the end, so a caller that pages to the end sees it (perhaps twice), never
misses it. A caller confined to a namespace reads only its namespace's entries.

A page holds at most page_size sessions and MAX_PAGE_BYTES, and reads at most SCAN
entries: where many entries are dead it may hold fewer than page_size (even none)
and a token to go on. Only an empty next_page_token means the end. A token is
``s{n}`` (entries after sequence n).

ListAgentSessions pages by position, oldest created first (llama-stack's shape): it
reads the agent's entries only (`of_agent`), so it costs what that agent's sessions
cost, whatever the number of other sessions.
"""

from __future__ import annotations

import asyncio

from llama_mesh.control_plane.namespaces import visible
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.names import parse_session_name
from llama_mesh.core.paging import MAX_PAGE_BYTES, decode_page_token, encode_page_token, page_size
from llama_mesh.jetstream import session_index
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.rpc.identity import caller
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2

SCAN = 512
"""Index entries one ListSessions call reads at most."""


def _cursor(token: str) -> int:
    value = decode_page_token(token)
    if value and (value[:1] != "s" or not value[1:].isdigit()):
        raise InvalidArgumentError(
            "page_token is not valid: pass the next_page_token of the previous page"
        )
    return int(value[1:]) if value else 0


async def _records(
    state: MeshState, entries: list[session_index.Entry]
) -> list[resources_pb2.Session | None]:
    found = await asyncio.gather(*(state.sessions.find(e.session_id) for e in entries))
    return [f[0] if f is not None else None for f in found]


async def _with_usage(state: MeshState, sessions: list[resources_pb2.Session]) -> None:
    """Fill in the tokens each session's tasks used (kept in the usage bucket)."""
    keys = [parse_session_name(s.name) for s in sessions]
    for session, found in zip(
        sessions, await asyncio.gather(*(state.usage.find(k) for k in keys)), strict=True
    ):
        if found is not None:
            session.usage.CopyFrom(found[0])


async def _live(
    state: MeshState, entries: list[session_index.Entry]
) -> list[tuple[session_index.Entry, resources_pb2.Session]]:
    """The entries whose record carries the expiry they name and the caller sees, with
    their records; the dead ones are deleted."""
    records = await _records(state, entries)
    dead = [e.seq for e, r in zip(entries, records, strict=True) if session_index.is_dead(e, r)]
    await asyncio.gather(*(session_index.remove(state.js, state.topology, s) for s in dead))
    return [
        (e, r)
        for e, r in zip(entries, records, strict=True)
        if r is not None and session_index.is_live(e, r) and visible(r)
    ]


async def of_agent(state: MeshState, agent_id: str) -> list[resources_pb2.Session]:
    """The sessions of agent `agent_id` the caller sees, oldest created first."""
    namespace = caller().scope
    sessions: list[resources_pb2.Session] = []
    after = 0
    while True:
        entries = await session_index.after(
            state.nc, state.topology, namespace, after, SCAN, agent=agent_id
        )
        if not entries:
            break
        sessions += [r for _, r in await _live(state, entries)]
        if entries[-1].pending == 0:
            break
        after = entries[-1].seq
    return sorted(sessions, key=lambda s: (s.create_time.ToNanoseconds(), s.name))


async def list_sessions(
    state: MeshState, request: cp.ListSessionsRequest
) -> cp.ListSessionsResponse:
    size = page_size(request.page_size)
    after = _cursor(request.page_token)
    namespace = caller().scope
    sessions: list[resources_pb2.Session] = []
    used = 0
    scanned = 0
    while scanned < SCAN:
        batch = min(max(size - len(sessions), 16), SCAN - scanned)
        entries = await session_index.after(state.nc, state.topology, namespace, after, batch)
        if not entries:
            return _reply(sessions, 0)
        scanned += len(entries)
        live = await _live(state, entries)
        await _with_usage(state, [r for _, r in live])
        for entry, session in live:
            if len(sessions) >= size:
                return _reply(sessions, after)
            if sessions and used + session.ByteSize() > MAX_PAGE_BYTES:
                return _reply(sessions, after)
            sessions.append(session)
            used += session.ByteSize()
            after = entry.seq
        if entries[-1].pending == 0:
            return _reply(sessions, 0)
        after = entries[-1].seq
        if len(sessions) >= size:
            return _reply(sessions, after)
    return _reply(sessions, after)


def _reply(sessions: list[resources_pb2.Session], after: int) -> cp.ListSessionsResponse:
    """The page; `after` is the sequence to go on after (0: the end)."""
    token = encode_page_token(f"s{after}") if after else ""
    return cp.ListSessionsResponse(sessions=sessions, next_page_token=token)
