"""Charges a task's LLM tokens to its record and its session, and keeps the session's budget.

Each TaskEvent that carries usage (an agent's inference step, a ``llama_mesh.TokenUsage``)
is recorded on the task (the journal adds it to ``Task.usage``) and added to
``Session.usage`` with compare-and-set, right after the LLM call: a replica that dies
mid-run has charged every call it made, and two tasks of one session running at once
both see the other's tokens. A task does not start in a session that has used its
budget up; a running task whose call takes the session past it fails with
RESOURCE_EXHAUSTED (``TokenBudgetExceededError``).
"""

from __future__ import annotations

import logging

from llama_mesh.core.names import TaskName
from llama_mesh.core.proto_time import now
from llama_mesh.core.token_usage import add, check_budget
from llama_mesh.jetstream.connection import MeshState
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
        found = await self._state.sessions.find(self._name.session_id)
        if found is not None:
            check_budget(found[0])

    async def charge(self, event: resources_pb2.TaskEvent) -> None:
        """Record `event` (with its usage) on the task, add the usage to the session,
        then raise TokenBudgetExceededError if the session went past its budget."""
        await self._state.journal.record(self._name, event, replica_id=self._replica_id)
        add(self.used, event.usage)

        def change(session: resources_pb2.Session) -> None:
            add(session.usage, event.usage)
            session.update_time.CopyFrom(now())

        session = await self._state.sessions.mutate(
            self._name.session_id, self._name.session, change
        )
        check_budget(session, running=self.used)
