"""ListSessions reads the session index a page at a time: what a listing reads does not
grow with the sessions of other namespaces, nor with sessions deleted before; expired
sessions leave it; the sessions of a deployment made before the index are listed after
the upgrade (issue 12, listings).

What a listing reads is counted as the messages its NATS connection receives while it
runs (nothing else uses that connection here), not timed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from types import SimpleNamespace

import nats as nats_py
import pytest

from llama_mesh.client import AsyncClient
from llama_mesh.config import RetentionConfig
from llama_mesh.control_plane import sessions as sessions_module
from llama_mesh.control_plane.agents_api.agents import Agents
from llama_mesh.control_plane.agents_api.sessions import AgentSessions
from llama_mesh.control_plane.registry import ServiceRegistry
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.control_plane.sessions import Sessions
from llama_mesh.core.limits import MAX_LABEL_KEY_CHARS, MAX_LABEL_VALUE_CHARS, MAX_LABELS
from llama_mesh.core.paging import MAX_PAGE_BYTES
from llama_mesh.core.proto_time import duration
from llama_mesh.jetstream import session_index
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.topology import EXPIRY_MARKER_TTL, Topology
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.rpc.identity import UNAUTHENTICATED_ADMIN, Identity, set_caller
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2

from kv_markers import expired

ADMIN = UNAUTHENTICATED_ADMIN


def _team(namespace: str) -> Identity:
    return Identity.of(f"team {namespace}", ["client"], namespace)


@contextlib.contextmanager
def _calling_as(identity: Identity) -> Iterator[None]:
    token = set_caller(identity)
    try:
        yield
    finally:
        token.var.reset(token)


async def _list_all(sessions: Sessions, page_size: int = 10) -> tuple[list[str], int]:
    """Every session the caller sees, page after page, and how many messages the
    listing received from NATS."""
    nc = sessions.state.nc
    before = nc.stats["in_msgs"]
    names: list[str] = []
    token = ""
    while True:
        page = await sessions.list_sessions(
            cp.ListSessionsRequest(page_size=page_size, page_token=token)
        )
        names += [s.name for s in page.sessions]
        token = page.next_page_token
        if not token:
            return names, int(nc.stats["in_msgs"] - before)


async def _first_page(sessions: Sessions) -> tuple[list[str], int]:
    nc = sessions.state.nc
    before = nc.stats["in_msgs"]
    page = await sessions.list_sessions(cp.ListSessionsRequest(page_size=10))
    return [s.name for s in page.sessions], int(nc.stats["in_msgs"] - before)


async def _create(sessions: Sessions, session_id: str, ttl: float | None = None) -> str:
    session = resources_pb2.Session(ttl=duration(ttl)) if ttl else resources_pb2.Session()
    request = cp.CreateSessionRequest(session_id=session_id, session=session)
    return (await sessions.create_session(request)).session.name


@pytest.mark.timeout(120)
async def test_what_a_page_reads_does_not_grow_with_other_namespaces_sessions(
    nats: EmbeddedNats,
) -> None:
    async with MeshState.connect([nats.url]) as state:
        sessions = Sessions(state, RetentionConfig())
        with _calling_as(_team("a")):
            mine = [await _create(sessions, f"a-{i}") for i in range(3)]
        with _calling_as(ADMIN):
            theirs = [await _create(sessions, f"b-{i:03d}") for i in range(20)]
            first, everyone_reads = await _first_page(sessions)
        assert first == (mine + theirs)[:10]  # the order they last changed
        with _calling_as(_team("a")):
            listed, confined_reads = await _list_all(sessions)
        assert listed == mine

        with _calling_as(ADMIN):
            for i in range(20, 220):
                await _create(sessions, f"b-{i:03d}")
            assert await _first_page(sessions) == (first, everyone_reads)
        with _calling_as(_team("a")):
            # Before the index, a confined caller read every other namespace's too.
            assert await _list_all(sessions) == (mine, confined_reads)


@pytest.mark.timeout(120)
async def test_deleted_sessions_do_not_weigh_on_listings(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Entries of deleted sessions are trimmed by the first reader past the grace time
    # (none here), so the listings after it read what they did before the deletes.
    monkeypatch.setattr(session_index, "GRACE", 0.0)
    async with MeshState.connect([nats.url]) as state:
        sessions = Sessions(state, RetentionConfig())
        kept = [await _create(sessions, f"kept-{i}") for i in range(5)]
        baseline = await _list_all(sessions)
        assert baseline[0] == kept
        for i in range(100):
            name = await _create(sessions, f"gone-{i:03d}")
            await sessions.delete_session(cp.DeleteSessionRequest(name=name))
        assert (await _list_all(sessions))[0] == kept  # trims the dead entries
        assert await _list_all(sessions) == baseline
        info = await state.js.stream_info(state.topology.session_stream)
        assert info.state.messages == len(kept)
        # Before, each deleted session left a marker in the bucket for good (which
        # every listing read again); now the marker expires too.
        marker = await state.js.get_last_msg("KV_mesh_sessions", "$KV.mesh_sessions.gone-000")
        assert marker.headers is not None
        assert marker.headers.get("Nats-TTL") == str(int(EXPIRY_MARKER_TTL))


@pytest.mark.timeout(60)
async def test_an_expired_session_leaves_the_listing(nats: EmbeddedNats) -> None:
    async with MeshState.connect([nats.url]) as state:
        sessions = Sessions(state, RetentionConfig())
        short = await _create(sessions, "short", ttl=1)
        kept = await _create(sessions, "kept")
        assert (await _list_all(sessions))[0] == [short, kept]
        await expired(nats.url, "mesh_sessions", "short")
        assert (await _list_all(sessions))[0] == [kept]


@pytest.mark.timeout(60)
async def test_sessions_made_before_the_index_are_listed_after_the_upgrade(
    nats: EmbeddedNats,
) -> None:
    async with (
        ControlPlaneServer.start([nats.url]) as server,
        AsyncClient(server.address) as client,
    ):
        made = [(await client.create_session(f"old-{i}")).name for i in range(3)]
        deleted = await client.create_session("deleted")
        await deleted.delete()
    # The data directory as an earlier version leaves it: the same buckets, no index.
    nc = await nats_py.connect(nats.url)
    try:
        await nc.jetstream().delete_stream("MESH_SESSIONS")
    finally:
        await nc.close()

    async with (
        ControlPlaneServer.start([nats.url]) as server,
        AsyncClient(server.address) as client,
    ):
        assert [s.name for s in await client.list_sessions()] == made
        again = (await client.create_session("new")).name
        assert [s.name for s in await client.list_sessions()] == [*made, again]
    async with (
        ControlPlaneServer.start([nats.url]) as server,
        AsyncClient(server.address) as client,
    ):
        # Indexed once: a later start does not index them again.
        assert [s.name for s in await client.list_sessions()] == [*made, again]


@pytest.mark.timeout(120)
async def test_a_page_of_large_sessions_is_cut_by_bytes_never_refused(
    nats: EmbeddedNats,
) -> None:
    # 200 sessions with every label at its longest: about 4 MB, over a reply's bound.
    labels = {
        f"{i:02d}".ljust(MAX_LABEL_KEY_CHARS, "k"): "v" * MAX_LABEL_VALUE_CHARS
        for i in range(MAX_LABELS)
    }
    async with MeshState.connect([nats.url]) as state:
        sessions = Sessions(state, RetentionConfig())
        made = []
        for i in range(200):
            request = cp.CreateSessionRequest(
                session_id=f"big-{i:03d}", session=resources_pb2.Session(labels=labels)
            )
            made.append((await sessions.create_session(request)).session.name)
        first = await sessions.list_sessions(cp.ListSessionsRequest(page_size=1000))
        assert 0 < len(first.sessions) < 200 and first.next_page_token
        assert sum(s.ByteSize() for s in first.sessions) <= MAX_PAGE_BYTES
        assert (await _list_all(sessions, page_size=1000))[0] == made


@pytest.mark.timeout(60)
async def test_a_renewed_session_moves_to_the_end_and_leaves_one_entry(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with MeshState.connect([nats.url]) as state:
        sessions = Sessions(state, RetentionConfig())
        first = await _create(sessions, "first", ttl=100)
        second = await _create(sessions, "second", ttl=100)
        assert (await _list_all(sessions))[0] == [first, second]
        # A task created in it 20 s later (past a tenth of its TTL) renews it.
        later = time.time() + 20
        monkeypatch.setattr(sessions_module, "time", SimpleNamespace(time=lambda: later))
        renewed = await sessions.in_use("first", first)
        assert renewed.expire_time.ToSeconds() == int(later + 100)
        # The renewal deleted the entry it replaced: no reader has to.
        info = await state.js.stream_info(state.topology.session_stream)
        assert info.state.messages == 2
        assert (await _list_all(sessions))[0] == [second, first]  # the order they last changed


async def _create_for(sessions: Sessions, session_id: str, agent: str) -> str:
    labels = {session_index.AGENT_LABEL: agent} if agent else {}
    # A TTL that a test can renew (past a tenth of it).
    session = resources_pb2.Session(labels=labels, ttl=duration(100))
    request = cp.CreateSessionRequest(session_id=session_id, session=session)
    return (await sessions.create_session(request)).session.name


async def _of_agent(state: MeshState, agent: str) -> tuple[list[str], int]:
    """The agent's sessions the caller sees (as ListAgentSessions reads them), and how
    many messages reading them took."""
    sessions = Sessions(state, RetentionConfig())
    agents = AgentSessions(state, Agents(state, ServiceRegistry(state)), sessions)
    before = state.nc.stats["in_msgs"]
    listed = await agents.of_agent(agent)
    return [s.name for s in listed], int(state.nc.stats["in_msgs"] - before)


@pytest.mark.timeout(120)
async def test_what_an_agents_listing_reads_does_not_grow_with_other_sessions(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, ListAgentSessions read every session of the mesh for each call.
    async with MeshState.connect([nats.url]) as state:
        sessions = Sessions(state, RetentionConfig())
        mine = [await _create_for(sessions, f"mine-{i}", "helper") for i in range(3)]
        with _calling_as(_team("a")):
            confined = await _create_for(sessions, "team-a", "helper")
        await _create_for(sessions, "other-0", "planner")
        listed, reads = await _of_agent(state, "helper")
        assert listed == [*mine, confined]  # oldest first
        with _calling_as(_team("a")):
            assert (await _of_agent(state, "helper"))[0] == [confined]

        for i in range(200):
            await _create_for(sessions, f"other-{i + 1:03d}", "planner" if i % 2 else "")
        assert await _of_agent(state, "helper") == (listed, reads)
        # A renewal moves a session to the end of the index, not of the listing.
        later = time.time() + 20
        monkeypatch.setattr(sessions_module, "time", SimpleNamespace(time=lambda: later))
        await sessions.in_use("mine-0", mine[0])
        entries = await session_index.after(state.nc, state.topology, None, 0, 10, "helper")
        assert [e.session_id for e in entries][-1] == "mine-0"
        assert (await _of_agent(state, "helper"))[0] == listed


@pytest.mark.timeout(60)
async def test_an_index_without_agents_is_rewritten_once_at_start(nats: EmbeddedNats) -> None:
    async with (
        ControlPlaneServer.start([nats.url]) as server,
        AsyncClient(server.address) as client,
    ):
        plain = (await client.create_session("plain")).name
        helped = (await client.create_session("helped", labels={"agent_id": "helper"})).name
    # The index as the version before leaves it: one subject per namespace.
    nc = await nats_py.connect(nats.url)
    try:
        js = nc.jetstream()
        await js.delete_stream("MESH_SESSIONS")
        await Topology().ensure(js)
        for name in (plain, helped):
            record = await js.get_last_msg("KV_mesh_sessions", f"$KV.mesh_sessions.{name[9:]}")
            session = resources_pb2.Session.FromString(record.data or b"")
            entry = f'{{"s":"{name[9:]}","e":{session_index.expires(session)}}}'.encode()
            await js.publish("mesh.sessions._", entry, headers={"Nats-Msg-Id": name[9:]})
    finally:
        await nc.close()

    for _ in range(2):  # the second start finds nothing to rewrite
        async with (
            ControlPlaneServer.start([nats.url]) as server,
            AsyncClient(server.address) as client,
            MeshState.connect([nats.url]) as state,
        ):
            assert [s.name for s in await client.list_sessions()] == [plain, helped]
            assert (await _of_agent(state, "helper"))[0] == [helped]
            info = await state.js.stream_info("MESH_SESSIONS", subjects_filter=">")
            assert sorted((info.state.subjects or {}).keys()) == [
                "mesh.sessions._._",
                "mesh.sessions._.helper",
            ]
