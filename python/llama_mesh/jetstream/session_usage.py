"""The tokens a session's tasks used (``Session.usage`` when read), counted apart from
the sessions in the `usage` bucket, key ``{session}``.

The journal adds a task's LLM calls to its session's count as they are charged
(``TaskJournal.charge``), with compare-and-set, so two tasks of one session running
at once both see the other's tokens. The count expires with its session. The count
and revision written last are kept: the next charge of that session is one
compare-and-set (a read first only if another writer came in between).

    total = await SessionUsage(usage, sessions).add(name, event.usage)
"""

from __future__ import annotations

import time
from collections import OrderedDict

from llama_mesh.core import proto_time
from llama_mesh.core.errors import NotFoundError
from llama_mesh.core.names import TaskName
from llama_mesh.core.token_usage import add
from llama_mesh.jetstream.buckets import ProtoBucket
from llama_mesh.v1 import resources_pb2

Counted = tuple[resources_pb2.TokenUsage, int]  # a session's count and its revision


class SessionUsage:
    """Adds tokens to sessions' counts."""

    def __init__(
        self,
        usage: ProtoBucket[resources_pb2.TokenUsage],
        sessions: ProtoBucket[resources_pb2.Session],
        *,
        known: int = 1024,
    ) -> None:
        self._usage = usage
        self._sessions = sessions
        self._known_size = known
        self._known: OrderedDict[str, Counted] = OrderedDict()

    async def add(
        self, name: TaskName, usage: resources_pb2.TokenUsage
    ) -> resources_pb2.TokenUsage | None:
        """Add `usage`, spent by task `name`, to its session's count; the new count,
        or None if the session is gone (expired or deleted: nothing left to charge)."""
        key = name.session_id
        found = await self._sessions.find(key)
        if found is None:
            self._known.pop(key, None)
            return None
        ttl = _usage_ttl(found[0])
        while True:
            try:
                counted = await self._usage.mutate_from(
                    key,
                    name.session,
                    lambda count: add(count, usage),
                    self._known.get(key),
                    ttl=lambda _: ttl,
                )
            except NotFoundError:
                # The session's first tokens; a racing first writer makes create fail.
                created = await self._usage.create(key, usage, ttl=ttl)
                if created is None:
                    self._known.pop(key, None)
                    continue
                counted = (usage, created)
            self._remember(key, counted)
            return counted[0]

    def _remember(self, key: str, counted: Counted) -> None:
        self._known[key] = counted
        self._known.move_to_end(key)
        if len(self._known) > self._known_size:
            self._known.popitem(last=False)


def _usage_ttl(session: resources_pb2.Session) -> float | None:
    """How long the session's token count is kept: until the session expires, and a
    second more so that it never outlives its count (the control plane pushes both
    back together when it renews the session)."""
    if not session.HasField("expire_time"):
        return None  # made by a version without TTLs: kept until deleted, as it is
    return max(proto_time.epoch_seconds(session.expire_time) - time.time(), 0.0) + 1.0
