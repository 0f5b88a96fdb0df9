"""A control plane's cache of created agents (AgentCache): each agent read from the
store once, and a delete on any control plane seen by every cache, with a real
JetStream; two caches on two connections stand for two control planes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from llama_mesh.control_plane.agents_api.agent_cache import AgentCache
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import agents_pb2


def _agent(agent_id: str) -> agents_pb2.Agent:
    return agents_pb2.Agent(agent_id=agent_id, agent_config=agents_pb2.AgentConfig(model="m"))


async def _create(state: MeshState, caches: list[AgentCache], *agent_ids: str) -> None:
    """Create the agents, and wait until every cache has seen them created (a change
    it sees later would make it forget them)."""
    seen = [_when_forgotten(cache, agent_ids[-1]) for cache in caches]
    for agent_id in agent_ids:
        await state.agents.create(agent_id, _agent(agent_id))
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in seen)), 10)


def _count_reads(
    state: MeshState, monkeypatch: pytest.MonkeyPatch, during: Callable[[], None] = lambda: None
) -> list[str]:
    """The store reads of agents from now on (`during` runs inside each read)."""
    reads: list[str] = []
    read: Callable[[str], Awaitable[Any]] = state.agents.find

    async def counted(key: str) -> Any:
        reads.append(key)
        found = await read(key)
        during()
        return found

    monkeypatch.setattr(state.agents, "find", counted)
    return reads


def _when_forgotten(cache: AgentCache, agent_id: str) -> asyncio.Event:
    """Set once `cache` has forgotten `agent_id` (the test's hook on its watch)."""
    forgotten = asyncio.Event()
    forget = cache.forget

    def hooked(key: str) -> None:
        forget(key)
        if key == agent_id:
            forgotten.set()

    cache.forget = hooked  # type: ignore[method-assign,assignment]
    return forgotten


async def test_an_agent_is_read_once_and_a_delete_reaches_every_cache(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        MeshState.connect([nats.url]) as here,
        MeshState.connect([nats.url]) as there,
        AgentCache.following(here) as near,
        AgentCache.following(there) as far,
    ):
        await _create(here, [near, far], "a1")
        reads = _count_reads(there, monkeypatch)
        for _ in range(3):
            found = await far.find("a1")
            assert found is not None and found.agent_id == "a1"
        assert reads == ["a1"]
        assert await far.find("nobody") is None

        # Deleted by the other control plane: this one's cache learns it from the store.
        forgotten = _when_forgotten(far, "a1")
        await here.agents.delete("a1")
        near.forget("a1")  # as Agents.delete does on its own control plane
        await asyncio.wait_for(forgotten.wait(), 10)
        assert await far.find("a1") is None
        assert await near.find("a1") is None
        assert reads == ["a1", "nobody", "a1"]


async def test_an_agent_read_while_a_change_came_is_not_cached(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with MeshState.connect([nats.url]) as state, AgentCache.following(state) as cache:
        await _create(state, [cache], "a1")
        # A delete seen while the record was on its way: what was read may be stale.
        reads = _count_reads(state, monkeypatch, during=lambda: cache.forget("a1"))
        assert await cache.find("a1") is not None
        monkeypatch.undo()
        reads_after = _count_reads(state, monkeypatch)
        assert await cache.find("a1") is not None  # read again: it was not cached
        assert await cache.find("a1") is not None  # now it is
        assert (reads, reads_after) == (["a1"], ["a1"])


async def test_the_least_recently_used_agent_leaves_a_full_cache(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with MeshState.connect([nats.url]) as state, AgentCache.following(state) as cache:
        cache.size = 2
        await _create(state, [cache], "a1", "a2", "a3")
        reads = _count_reads(state, monkeypatch)
        for agent_id in ("a1", "a2", "a1", "a3", "a1", "a2"):
            assert await cache.find(agent_id) is not None
        # a2 was the least recently used when a3 came, and a3 when a2 came back.
        assert reads == ["a1", "a2", "a3", "a2"]
