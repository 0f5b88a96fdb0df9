"""Charges a task's LLM tokens to its record and its session, and keeps the session's budget.

Each TaskEvent that carries usage (an agent's inference step, a ``llama_mesh.TokenUsage``)
is recorded on the task (the journal adds it to ``Task.usage``) and added to the
session's count in the usage bucket (``Session.usage`` when read; replicas may not write
the sessions themselves) with compare-and-set, right after the LLM call: a replica that dies
mid-run has charged every call it made, and two tasks of one session running at once
both see the other's tokens. The count expires with its session. A task does not start
in a session that has used its budget up; a running task whose call takes the session
past it fails with RESOURCE_EXHAUSTED (``TokenBudgetExceededError``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from llama_mesh.core import proto_time
from llama_mesh.core.errors import NotFoundError
from llama_mesh.core.names import TaskName
from llama_mesh.core.token_usage import add, check_budget
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.telemetry import metrics
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)


class TokenLedger:
    """The token accounting of one attempt of one task."""

    def __init__(self, state: MeshState, name: TaskName, replica_id: str) -> None:
        self._state = state
        self._name = name
        self._replica_id = replica_id
        self.used = resources_pb2.TokenUsage()
        # The session's count and its revision as last read or written here: the next
        # charge is then one compare-and-set (a read first only if another task of the
        # session wrote in between).
        self._counted: tuple[resources_pb2.TokenUsage, int] | None = None

    async def check(self) -> None:
        """Raise TokenBudgetExceededError if the session has no tokens left."""
        key = self._name.session_id
        found, self._counted = await asyncio.gather(
            self._state.sessions.find(key), self._state.usage.find(key)
        )
        if found is None:
            return
        session = found[0]
        if self._counted is not None:
            session.usage.CopyFrom(self._counted[0])
        check_budget(session)

    async def charge(self, event: resources_pb2.TaskEvent) -> None:
        """Record `event` (with its usage) on the task, add the usage to the session,
        then raise TokenBudgetExceededError if the session went past its budget."""
        # The session is read again (its expiry moves when it is renewed), alongside.
        _, found = await asyncio.gather(
            self._state.journal.record(self._name, event, replica_id=self._replica_id),
            self._state.sessions.find(self._name.session_id),
        )
        add(self.used, event.usage)
        metrics.tokens_used(event.usage)
        if found is None:
            return  # expired or deleted: no session left to charge
        session = found[0]
        session.usage.CopyFrom(await self._add_to_session(event.usage, _usage_ttl(session)))
        check_budget(session, running=self.used)

    async def _add_to_session(
        self, usage: resources_pb2.TokenUsage, ttl: float | None
    ) -> resources_pb2.TokenUsage:
        """Add `usage` to the session's count (compare-and-set), kept `ttl` seconds;
        the new count."""
        key = self._name.session_id
        while True:
            try:
                self._counted = await self._state.usage.mutate_from(
                    key,
                    self._name.session,
                    lambda counted: add(counted, usage),
                    self._counted,
                    ttl=lambda _: ttl,
                )
                return self._counted[0]
            except NotFoundError:
                # The session's first tokens; a racing first writer makes create fail.
                created = await self._state.usage.create(key, usage, ttl=ttl)
                if created is not None:
                    self._counted = (usage, created)
                    return usage


def _usage_ttl(session: resources_pb2.Session) -> float | None:
    """How long the session's token count is kept: until the session expires, and a
    second more so that it never outlives its count (the control plane pushes both
    back together when it renews the session)."""
    if not session.HasField("expire_time"):
        return None  # made by a version without TTLs: kept until deleted, as it is
    return max(proto_time.epoch_seconds(session.expire_time) - time.time(), 0.0) + 1.0
