"""The AgentsAPI and ResponsesAPI servicers: each RPC hands its request to the part
that holds it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from llama_mesh.control_plane.agents_api.agent_cache import AgentCache
from llama_mesh.control_plane.agents_api.agents import Agents
from llama_mesh.control_plane.agents_api.fork import fork_session
from llama_mesh.control_plane.agents_api.responses import Responses
from llama_mesh.control_plane.agents_api.sessions import AgentSessions, agent_session
from llama_mesh.control_plane.agents_api.turns import Turns
from llama_mesh.control_plane.servicer import ControlPlaneAPIServicer
from llama_mesh.jetstream.live_events import LiveEvents
from llama_mesh.v1 import agents_pb2 as ag
from llama_mesh.v1 import agents_pb2_grpc, responses_pb2_grpc
from llama_mesh.v1 import responses_pb2 as rs


class AgentsAPIServicer(agents_pb2_grpc.AgentsAPIServicer):
    """Agents, sessions, turns and steps over the control plane's parts."""

    def __init__(
        self,
        control_plane: ControlPlaneAPIServicer,
        live_events: LiveEvents,
        agent_cache: AgentCache | None = None,
    ) -> None:
        self.agents = Agents(control_plane.state, control_plane.registry, agent_cache)
        self.sessions = AgentSessions(control_plane.state, self.agents, control_plane.sessions)
        self.turns = Turns(
            control_plane.state,
            self.sessions,
            control_plane.tasks,
            control_plane.shutting_down,
            live_events,
        )

    # ----------------------------------------------------------------- agents

    async def CreateAgent(
        self,
        request: ag.CreateAgentRequest,
        context: grpc.aio.ServicerContext[ag.CreateAgentRequest, ag.CreateAgentResponse],
    ) -> ag.CreateAgentResponse:
        return await self.agents.create(request)

    async def GetAgent(
        self,
        request: ag.GetAgentRequest,
        context: grpc.aio.ServicerContext[ag.GetAgentRequest, ag.GetAgentResponse],
    ) -> ag.GetAgentResponse:
        return await self.agents.get(request)

    async def ListAgents(
        self,
        request: ag.ListAgentsRequest,
        context: grpc.aio.ServicerContext[ag.ListAgentsRequest, ag.ListAgentsResponse],
    ) -> ag.ListAgentsResponse:
        return await self.agents.list(request)

    async def DeleteAgent(
        self,
        request: ag.DeleteAgentRequest,
        context: grpc.aio.ServicerContext[ag.DeleteAgentRequest, ag.DeleteAgentResponse],
    ) -> ag.DeleteAgentResponse:
        return await self.sessions.delete_agent(request)

    # ----------------------------------------------------------------- sessions

    async def CreateAgentSession(
        self,
        request: ag.CreateAgentSessionRequest,
        context: grpc.aio.ServicerContext[
            ag.CreateAgentSessionRequest, ag.CreateAgentSessionResponse
        ],
    ) -> ag.CreateAgentSessionResponse:
        return await self.sessions.create_session(request)

    async def GetAgentSession(
        self,
        request: ag.GetAgentSessionRequest,
        context: grpc.aio.ServicerContext[ag.GetAgentSessionRequest, ag.GetAgentSessionResponse],
    ) -> ag.GetAgentSessionResponse:
        target, session = await self.sessions.find(request.agent_id, request.session_id)
        turns = await self.turns.of_session(target, session, list(request.turn_ids))
        return ag.GetAgentSessionResponse(session=agent_session(session, turns))

    async def ListAgentSessions(
        self,
        request: ag.ListAgentSessionsRequest,
        context: grpc.aio.ServicerContext[
            ag.ListAgentSessionsRequest, ag.ListAgentSessionsResponse
        ],
    ) -> ag.ListAgentSessionsResponse:
        target = await self.agents.target(request.agent_id)
        sessions, has_more = await self.sessions.list_sessions(request)
        data = [agent_session(s, await self.turns.of_session(target, s, [])) for s in sessions]
        return ag.ListAgentSessionsResponse(
            data=data,
            has_more=has_more,
            url=f"/v1/agents/{request.agent_id}/sessions",
        )

    async def DeleteAgentSession(
        self,
        request: ag.DeleteAgentSessionRequest,
        context: grpc.aio.ServicerContext[
            ag.DeleteAgentSessionRequest, ag.DeleteAgentSessionResponse
        ],
    ) -> ag.DeleteAgentSessionResponse:
        return await self.sessions.delete_session(request)

    async def ForkAgentSession(
        self,
        request: ag.ForkAgentSessionRequest,
        context: grpc.aio.ServicerContext[ag.ForkAgentSessionRequest, ag.ForkAgentSessionResponse],
    ) -> ag.ForkAgentSessionResponse:
        return await fork_session(self.sessions, self.turns, request)

    # ----------------------------------------------------------------- turns

    async def CreateTurn(
        self,
        request: ag.CreateTurnRequest,
        context: grpc.aio.ServicerContext[ag.CreateTurnRequest, ag.CreateTurnResponse],
    ) -> ag.CreateTurnResponse:
        return ag.CreateTurnResponse(turn=await self.turns.create(request))

    async def StreamTurn(
        self,
        request: ag.CreateTurnRequest,
        context: grpc.aio.ServicerContext[ag.CreateTurnRequest, ag.StreamTurnResponse],
    ) -> AsyncIterator[ag.StreamTurnResponse]:
        async for payload in self.turns.stream(request):
            yield ag.StreamTurnResponse(event=ag.TurnResponseEvent(payload=payload))

    async def GetTurn(
        self,
        request: ag.GetTurnRequest,
        context: grpc.aio.ServicerContext[ag.GetTurnRequest, ag.GetTurnResponse],
    ) -> ag.GetTurnResponse:
        return ag.GetTurnResponse(turn=await self.turns.get(request))

    async def ResumeTurn(
        self,
        request: ag.ResumeTurnRequest,
        context: grpc.aio.ServicerContext[ag.ResumeTurnRequest, ag.ResumeTurnResponse],
    ) -> ag.ResumeTurnResponse:
        return ag.ResumeTurnResponse(turn=await self.turns.resume(request))

    async def StreamResumeTurn(
        self,
        request: ag.ResumeTurnRequest,
        context: grpc.aio.ServicerContext[ag.ResumeTurnRequest, ag.StreamResumeTurnResponse],
    ) -> AsyncIterator[ag.StreamResumeTurnResponse]:
        async for payload in self.turns.resume_stream(request):
            yield ag.StreamResumeTurnResponse(event=ag.TurnResponseEvent(payload=payload))

    async def GetStep(
        self,
        request: ag.GetStepRequest,
        context: grpc.aio.ServicerContext[ag.GetStepRequest, ag.GetStepResponse],
    ) -> ag.GetStepResponse:
        return ag.GetStepResponse(step=await self.turns.get_step(request))


class ResponsesAPIServicer(responses_pb2_grpc.ResponsesAPIServicer):
    """Responses over the control plane's parts (the Agents API's agents and turns)."""

    def __init__(self, control_plane: ControlPlaneAPIServicer, agents: AgentsAPIServicer) -> None:
        self.responses = Responses(
            control_plane.state, agents.agents, control_plane.tasks, agents.turns
        )

    async def CreateResponse(
        self,
        request: rs.CreateResponseRequest,
        context: grpc.aio.ServicerContext[rs.CreateResponseRequest, rs.CreateResponseResponse],
    ) -> rs.CreateResponseResponse:
        return rs.CreateResponseResponse(response=await self.responses.create(request))

    async def StreamResponse(
        self,
        request: rs.CreateResponseRequest,
        context: grpc.aio.ServicerContext[rs.CreateResponseRequest, rs.StreamResponseResponse],
    ) -> AsyncIterator[rs.StreamResponseResponse]:
        async for event in self.responses.stream(request):
            yield event

    async def GetResponse(
        self,
        request: rs.GetResponseRequest,
        context: grpc.aio.ServicerContext[rs.GetResponseRequest, rs.GetResponseResponse],
    ) -> rs.GetResponseResponse:
        return rs.GetResponseResponse(response=await self.responses.get(request))

    async def ListResponses(
        self,
        request: rs.ListResponsesRequest,
        context: grpc.aio.ServicerContext[rs.ListResponsesRequest, rs.ListResponsesResponse],
    ) -> rs.ListResponsesResponse:
        return await self.responses.list(request)

    async def ListInputItems(
        self,
        request: rs.ListInputItemsRequest,
        context: grpc.aio.ServicerContext[rs.ListInputItemsRequest, rs.ListInputItemsResponse],
    ) -> rs.ListInputItemsResponse:
        return await self.responses.input_items(request)

    async def DeleteResponse(
        self,
        request: rs.DeleteResponseRequest,
        context: grpc.aio.ServicerContext[rs.DeleteResponseRequest, rs.DeleteResponseResponse],
    ) -> rs.DeleteResponseResponse:
        return await self.responses.delete(request)
