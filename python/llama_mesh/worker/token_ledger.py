"""Charges a task's LLM tokens to its record and its session, and keeps the session's budget.

Each TaskEvent that carries usage (an agent's inference step, a ``llama_mesh.TokenUsage``)
is charged through the journal right after the LLM call: recorded on the task (adding to
``Task.usage``) and added to the session's count (jetstream/session_usage.py), so a
replica that dies mid-run has charged every call it made, and two tasks of one session
running at once both see the other's tokens. A replica's journal asks a control plane to
do both (it may write neither the task nor the count itself). A task does not start
in a session that has used its budget up; a running task whose call takes the session
past it fails with RESOURCE_EXHAUSTED (``TokenBudgetExceededError``).
"""

from __future__ import annotations

import asyncio
import logging

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

    async def check(self) -> None:
        """Raise TokenBudgetExceededError if the session has no tokens left."""
        key = self._name.session_id
        found, counted = await asyncio.gather(
            self._state.sessions.find(key), self._state.usage.find(key)
        )
        if found is None:
            return
        session = found[0]
        if counted is not None:
            session.usage.CopyFrom(counted[0])
        check_budget(session)

    async def charge(self, event: resources_pb2.TaskEvent) -> None:
        """Record `event` (with its usage) on the task, add the usage to the session,
        then raise TokenBudgetExceededError if the session went past its budget."""
        # The session is read again (its expiry moves when it is renewed), alongside.
        (_, total), found = await asyncio.gather(
            self._state.journal.charge(self._name, event, replica_id=self._replica_id),
            self._state.sessions.find(self._name.session_id),
        )
        add(self.used, event.usage)
        metrics.tokens_used(event.usage)
        if found is None or total is None:
            return  # expired or deleted: no session left to charge
        session = found[0]
        session.usage.CopyFrom(total)
        check_budget(session, running=self.used)
