"""Created agents, cached: read from the store once per control plane, not per turn.

A created agent never changes, but any control plane may delete it. Each cache
follows the changes of the agents bucket as they are stored (an ordered consumer of
its stream, from now on, headers only) and forgets every agent that changed. An
agent is cached only if no change came while it was read, so a delete stored during
the read is not undone by it. At most `size` agents are kept, the least recently used
dropped first: agents accumulate, unlike services.

    async with AgentCache.following(state) as cache:
        agent = await cache.find(agent_id)   # None: no such agent
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.js import api as js_api

from llama_mesh.jetstream.connection import MeshState
from llama_mesh.v1 import agents_pb2

logger = logging.getLogger(__name__)

MAX_AGENTS = 4096


class AgentCache:
    """The created agents this control plane read lately."""

    def __init__(self, state: MeshState, size: int = MAX_AGENTS) -> None:
        self.state = state
        self.size = size
        self._agents: OrderedDict[str, agents_pb2.Agent] = OrderedDict()
        self._changes = 0  # changes of the bucket seen so far
        self._prefix = ""

    @classmethod
    @contextlib.asynccontextmanager
    async def following(cls, state: MeshState) -> AsyncIterator[AgentCache]:
        """A cache that follows the bucket's changes while the context lasts."""
        cache = cls(state)
        bucket = state.topology.bucket("agents")
        cache._prefix = f"$KV.{bucket}."  # a KV bucket's subjects (NATS' layout)
        sub = await state.js.subscribe(
            f"{cache._prefix}>",
            stream=f"KV_{bucket}",
            cb=cache._changed,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.NEW,
            headers_only=True,
        )
        try:
            yield cache
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone already
                await sub.unsubscribe()

    async def _changed(self, msg: Msg) -> None:
        self.forget(msg.subject.removeprefix(self._prefix))

    def forget(self, agent_id: str) -> None:
        """The agent changed (or was deleted): read it from the store next time."""
        self._changes += 1
        if self._agents.pop(agent_id, None) is not None:
            logger.debug("agent %s changed or deleted: no longer cached", agent_id)

    async def find(self, agent_id: str) -> agents_pb2.Agent | None:
        """The created agent, or None if there is none (shared with the cache: read it,
        do not change it)."""
        agent = self._agents.get(agent_id)
        if agent is not None:
            self._agents.move_to_end(agent_id)
            return agent
        changes = self._changes
        found = await self.state.agents.find(agent_id)
        if found is None:
            return None
        if changes == self._changes:  # nothing changed while it was read
            self._agents[agent_id] = found[0]
            if len(self._agents) > self.size:
                self._agents.popitem(last=False)
        return found[0]
