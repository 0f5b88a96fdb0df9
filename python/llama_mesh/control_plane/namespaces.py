"""Namespaces (tenants): a caller confined to one sees only that namespace's sessions.

A session belongs to the namespace of the identity that created it (Session.namespace).
A caller confined to a namespace (an API key or JWT that names one, without `admin` or a
service role: services run tasks of every namespace) gets NOT_FOUND for a session, or a
task of a session, of another namespace, with the very message a missing one gives:
it learns nothing about what other teams have.

    await require_visible(state, request.name)      # before reading or changing it
    sessions = [s for s in sessions if visible(s)]   # listings of sessions
    seen = SessionScope.of(state)                    # listings of tasks: None sees all
    if seen is None or await seen.sees(session_id): ...
"""

from __future__ import annotations

from llama_mesh.core.errors import NotFoundError
from llama_mesh.core.names import TaskName, parse_session_name
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.rpc.identity import caller
from llama_mesh.v1 import resources_pb2


def visible(session: resources_pb2.Session) -> bool:
    """Whether the caller of this call may see `session`."""
    return caller().sees(session.namespace)


class SessionScope:
    """Which sessions a confined caller may see, each looked up once per call: a page of
    tasks reads the sessions its tasks belong to, not every session there is."""

    def __init__(self, state: MeshState) -> None:
        self.state = state
        self._seen: dict[str, bool] = {}

    @classmethod
    def of(cls, state: MeshState) -> SessionScope | None:
        """The scope of this call's caller; None: it sees every session."""
        return None if caller().scope is None else cls(state)

    async def sees(self, session_id: str) -> bool:
        if session_id not in self._seen:
            found = await self.state.sessions.find(session_id)
            self._seen[session_id] = found is not None and visible(found[0])
        return self._seen[session_id]


async def require_visible(state: MeshState, name: str, field: str = "name") -> None:
    """NotFoundError, worded as for a resource that does not exist, unless the caller
    may see the session of `name` (`sessions/{s}` or `sessions/{s}/tasks/{t}`)."""
    if caller().scope is None:
        return
    # A malformed name gets the INVALID_ARGUMENT anyone gets, before any look-up.
    task = "/tasks/" in name
    session_id = TaskName.parse(name, field).session_id if task else parse_session_name(name, field)
    found = await state.sessions.find(session_id)
    if found is None or not visible(found[0]):
        raise NotFoundError(f"{'task' if task else 'session'} {name!r} not found")
