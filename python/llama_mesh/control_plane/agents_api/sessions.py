"""Sessions of an agent: mesh sessions labelled with the agent and a name.

A session of the Agents API is a session of the mesh (same id), so the agent's
conversation is the session's saved Context and its turns are the session's tasks.
"""

from __future__ import annotations

import logging

from llama_mesh.control_plane import session_listing
from llama_mesh.control_plane.agents_api.agents import (
    Agents,
    AgentTarget,
    check_id,
    new_uuid,
    not_found,
    window,
)
from llama_mesh.control_plane.namespaces import visible
from llama_mesh.control_plane.sessions import Sessions
from llama_mesh.core.errors import InvalidArgumentError, PermissionDeniedError
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.session_index import AGENT_LABEL
from llama_mesh.rpc.identity import caller
from llama_mesh.v1 import agents_pb2, resources_pb2
from llama_mesh.v1 import control_plane_pb2 as cp

logger = logging.getLogger(__name__)

NAME_LABEL = "session_name"
# Set on a session made by ForkAgentSession: `{session_id}/{turn_id}` it was forked at.
FORKED_FROM_LABEL = "forked_from"


class AgentSessions:
    """Create, get, list and delete the sessions of agents."""

    def __init__(self, state: MeshState, agents: Agents, sessions: Sessions) -> None:
        self.state = state
        self.agents = agents
        self.sessions = sessions

    async def create(
        self, target: AgentTarget, name: str, labels: dict[str, str] | None = None
    ) -> resources_pb2.Session:
        # Made as CreateSession makes one: it expires once idle, like any session.
        created = await self.sessions.create_session(
            cp.CreateSessionRequest(
                session_id=new_uuid(),
                session=resources_pb2.Session(
                    labels={AGENT_LABEL: target.agent.agent_id, NAME_LABEL: name, **(labels or {})},
                    overlap_policy=resources_pb2.OVERLAP_POLICY_QUEUE,
                ),
            )
        )
        session = created.session
        logger.info("session %s created for agent %s", session.name, target.agent.agent_id)
        return session

    async def create_session(
        self, request: agents_pb2.CreateAgentSessionRequest
    ) -> agents_pb2.CreateAgentSessionResponse:
        target = await self.agents.target(request.agent_id)
        if not request.session_name:
            raise InvalidArgumentError("session_name is required", field="session_name")
        session = await self.create(target, request.session_name)
        return agents_pb2.CreateAgentSessionResponse(session_id=session.name.partition("/")[2])

    async def find(
        self, agent_id: str, session_id: str
    ) -> tuple[AgentTarget, resources_pb2.Session]:
        """The agent and its session; NOT_FOUND for either, or a session of another agent."""
        target, (session, _) = await self.find_record(agent_id, session_id)
        return target, session

    async def find_record(
        self, agent_id: str, session_id: str
    ) -> tuple[AgentTarget, tuple[resources_pb2.Session, int]]:
        """As `find`, with the session's revision: a turn's task is created from it."""
        target = await self.agents.target(agent_id)
        check_id("session", session_id)
        found = await self.state.sessions.find(session_id)
        if found is None or found[0].labels.get(AGENT_LABEL) != agent_id or not visible(found[0]):
            raise not_found("session", session_id)
        return target, found

    async def of_agent(self, agent_id: str) -> list[resources_pb2.Session]:
        """The agent's sessions the caller sees, oldest first (read from the session
        index: the agent's entries only)."""
        return await session_listing.of_agent(self.state, agent_id)

    async def list_sessions(
        self, request: agents_pb2.ListAgentSessionsRequest
    ) -> tuple[list[resources_pb2.Session], bool]:
        await self.agents.target(request.agent_id)
        return window(await self.of_agent(request.agent_id), request)

    async def delete(self, session: resources_pb2.Session) -> None:
        """Delete the session with its turns and conversation (running turns cancelled)."""
        await self.sessions.delete_session(cp.DeleteSessionRequest(name=session.name, force=True))

    async def delete_session(
        self, request: agents_pb2.DeleteAgentSessionRequest
    ) -> agents_pb2.DeleteAgentSessionResponse:
        _, session = await self.find(request.agent_id, request.session_id)
        await self.delete(session)
        return agents_pb2.DeleteAgentSessionResponse()

    async def delete_agent(
        self, request: agents_pb2.DeleteAgentRequest
    ) -> agents_pb2.DeleteAgentResponse:
        target = await self.agents.deletable(request.agent_id)
        if caller().scope is not None:
            # Agents are shared by every namespace, and deleting one deletes its
            # sessions: only a caller that sees them all may.
            raise PermissionDeniedError(
                f"agent {request.agent_id!r} is shared by every namespace: delete it "
                f"with a key that is not confined to one (yours is to {caller().scope!r})"
            )
        for session in await self.of_agent(target.agent.agent_id):
            await self.delete(session)
        await self.agents.delete(target)
        return agents_pb2.DeleteAgentResponse()


def agent_session(
    session: resources_pb2.Session, turns: list[agents_pb2.Turn]
) -> agents_pb2.AgentSession:
    """A mesh session as the Agents API shows it."""
    out = agents_pb2.AgentSession(
        session_id=session.name.partition("/")[2],
        session_name=session.labels.get(NAME_LABEL, ""),
        turns=turns,
    )
    out.started_at.CopyFrom(session.create_time)
    return out
