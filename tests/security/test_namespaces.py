"""Namespaces: two teams' keys, each confined to its namespace, do not see each
other's sessions or tasks. Team B tries to read, list, cancel, answer and add to team
A's; every try is NOT_FOUND worded exactly as for a session or task that does not
exist, and team A's task is untouched. Admin sees both."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from llama_mesh.config import ModelConfig
from llama_mesh.core.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from llama_mesh.core.names import AGENTS_SERVICE
from llama_mesh.testing import Reply, ScriptedModel
from llama_mesh.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    control_plane_pb2,
    control_plane_pb2_grpc,
    resources_pb2,
    responses_pb2,
    responses_pb2_grpc,
)
from llama_mesh.worker.configured_agent import ConfiguredAgentRunner

from .conftest import SecureMesh
from mesh_workflows import ApprovalWorkflow


async def _team_keys(mesh: SecureMesh) -> None:
    async with mesh.client("admin") as admin:
        for team in ("a", "b"):
            token, key = await admin.api_keys.create(["client"], namespace=f"team-{team}")
            assert key.namespace == f"team-{team}"
            mesh.tokens[f"team-{team}"] = token
        token, _ = await admin.api_keys.create(["service:approval", "client"])
        mesh.tokens["approval"] = token
        with pytest.raises(InvalidArgumentError, match="is not a namespace"):
            await admin.api_keys.create(["client"], namespace="Team A")


@pytest.mark.timeout(90)
async def test_a_team_sees_nothing_of_another_teams_sessions_and_tasks(
    secure_mesh: SecureMesh,
) -> None:
    mesh = secure_mesh
    await _team_keys(mesh)
    await mesh.add_replica(ApprovalWorkflow(), "approval", "approval")
    async with (
        mesh.client("team-a") as a,
        mesh.client("team-b") as b,
        mesh.client("admin") as admin,
    ):
        session_a = await a.create_session("shared-name-a")
        assert session_a.session.namespace == "team-a"
        handle = await session_a.create_task("approval", question="ship it?")
        async for event in handle.events():
            if event.state == "WAITING_FOR_INPUT":
                break
        session_b = await b.create_session()
        missing_session = "sessions/does-not-exist"
        missing_task = f"{session_a.name}/tasks/does-not-exist"

        # What a missing session or task says, to compare the refusals with.
        with pytest.raises(NotFoundError) as absent:
            await b.get_session(missing_session)
        assert absent.value.message == f"session {missing_session!r} not found"

        with pytest.raises(NotFoundError) as caught:
            await b.get_session(session_a.name)
        assert caught.value.message == f"session {session_a.name!r} not found"
        assert session_a.name not in [s.name for s in await b.list_sessions()]
        assert [s.name for s in await b.list_sessions()] == [session_b.name]
        with pytest.raises(NotFoundError) as caught:
            await b.get_task(handle.name)
        assert caught.value.message == f"task {handle.name!r} not found"
        with pytest.raises(NotFoundError):
            await b.get_task(missing_task)
        with pytest.raises(NotFoundError):
            await b.list_tasks(session_a.name)
        assert handle.name not in [t.name for t in await b.list_tasks("sessions/-")]
        theirs = b.task(handle.name)
        with pytest.raises(NotFoundError):
            await theirs.cancel()
        with pytest.raises(NotFoundError):
            await theirs.send_event("HumanResponseEvent", response="no")
        with pytest.raises(NotFoundError):
            async for _ in theirs.events():
                pass
        with pytest.raises(NotFoundError):
            await b.answer(handle.name, "no")
        assert handle.name not in [t.name for t in await b.inbox()]
        with pytest.raises(NotFoundError):
            await b.delete_session(session_a.name, force=True)
        # Taking the same session id does not reveal that it exists.
        with pytest.raises(AlreadyExistsError, match="is taken"):
            await b.get_or_create_session("shared-name-a")
        with pytest.raises(AlreadyExistsError, match="is taken: choose another"):
            await b.create_session("shared-name-a")

        # Team A's task is as it was; admin sees both teams.
        assert (await a.get_task(handle.name)).state == resources_pb2.TASK_STATE_WAITING_FOR_INPUT
        everyone = [s.name for s in await admin.list_sessions()]
        assert session_a.name in everyone and session_b.name in everyone
        await handle.send_event("HumanResponseEvent", response="yes")
        assert await handle.result() == {"answer": "yes"}


async def test_a_plain_grpc_caller_gets_not_found_too(secure_mesh: SecureMesh) -> None:
    await _team_keys(secure_mesh)
    async with secure_mesh.client("team-a") as a:
        session = await a.create_session()
    async with grpc.aio.insecure_channel(secure_mesh.control_plane) as channel:
        stub = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetSession(
                control_plane_pb2.GetSessionRequest(name=session.name),
                metadata=secure_mesh.metadata("team-b"),
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def _grpc_error(caught: pytest.ExceptionInfo[grpc.aio.AioRpcError]) -> tuple[grpc.StatusCode, str]:
    return caught.value.code(), caught.value.details() or ""


@pytest.mark.timeout(90)
async def test_agent_sessions_turns_and_responses_stay_in_their_namespace(
    secure_mesh: SecureMesh,
) -> None:
    """The Agents and Responses APIs run on sessions and tasks: team B cannot reach
    team A's agent session, turn, step or response through them either, and what it
    gets is what an id that does not exist gets."""
    mesh = secure_mesh
    await _team_keys(mesh)
    async with mesh.client("admin") as admin:
        token, _ = await admin.api_keys.create([f"service:{AGENTS_SERVICE}"])
        mesh.tokens["agents"] = token
    model = ScriptedModel().respond_with(lambda request: Reply("hello from the model"))
    async with (
        model.serve() as model_url,
        grpc.aio.insecure_channel(mesh.control_plane) as channel,
        mesh.client("team-a") as a_client,
        mesh.client("team-b") as b_client,
    ):
        runner = ConfiguredAgentRunner({"scripted": ModelConfig(base_url=model_url, max_retries=0)})
        await mesh.add_replica(runner, AGENTS_SERVICE, "agents")
        agents = agents_pb2_grpc.AgentsAPIStub(channel)
        responses = responses_pb2_grpc.ResponsesAPIStub(channel)
        a, b, admin_md = mesh.metadata("team-a"), mesh.metadata("team-b"), mesh.metadata("admin")

        # Team A: an agent (shared by every namespace), a session with one turn, a response.
        agent_id = (
            await agents.CreateAgent(
                agents_pb2.CreateAgentRequest(
                    agent_config=agents_pb2.AgentConfig(model="scripted", instructions="be brief")
                ),
                metadata=a,
            )
        ).agent_id
        session_id = (
            await agents.CreateAgentSession(
                agents_pb2.CreateAgentSessionRequest(agent_id=agent_id, session_name="a's"),
                metadata=a,
            )
        ).session_id
        hello = agents_pb2.InputMessage(
            user=agents_pb2.UserMessage(content=struct_pb2.Value(string_value="hi"))
        )
        turn = (
            await agents.CreateTurn(
                agents_pb2.CreateTurnRequest(
                    agent_id=agent_id, session_id=session_id, messages=[hello]
                ),
                metadata=a,
            )
        ).turn
        assert turn.steps, "the turn ran"
        response = (
            await responses.CreateResponse(
                responses_pb2.CreateResponseRequest(
                    model="scripted", input=struct_pb2.Value(string_value="hi")
                ),
                metadata=a,
            )
        ).response
        assert response.status == "completed"
        # Underneath, both are team A's sessions.
        a_sessions = [s.name for s in await a_client.list_sessions()]
        assert f"sessions/{session_id}" in a_sessions and len(a_sessions) == 2
        assert await b_client.list_sessions() == []
        assert await b_client.list_tasks("sessions/-") == []

        # Team B: every call naming A's session, turn, step or response is NOT_FOUND,
        # worded as for an id that does not exist.
        async def refused(call: Any, request: Any, missing: Any) -> None:
            with pytest.raises(grpc.aio.AioRpcError) as theirs:
                await call(request, metadata=b)
            with pytest.raises(grpc.aio.AioRpcError) as absent:
                await call(missing, metadata=b)
            assert _grpc_error(theirs)[0] == grpc.StatusCode.NOT_FOUND
            own_id, none_id = str(theirs.value.details()), str(absent.value.details())
            assert own_id.replace(session_id, "?").replace(response.id, "?") == none_id.replace(
                "does-not-exist", "?"
            )

        nobody = "does-not-exist"
        ids: dict[str, Any] = {"agent_id": agent_id, "session_id": session_id}
        no_ids: dict[str, Any] = {"agent_id": agent_id, "session_id": nobody}
        await refused(
            agents.GetAgentSession,
            agents_pb2.GetAgentSessionRequest(**ids),
            agents_pb2.GetAgentSessionRequest(**no_ids),
        )
        await refused(
            agents.GetTurn,
            agents_pb2.GetTurnRequest(**ids, turn_id=turn.turn_id),
            agents_pb2.GetTurnRequest(**no_ids, turn_id=turn.turn_id),
        )
        await refused(
            agents.GetStep,
            agents_pb2.GetStepRequest(**ids, turn_id=turn.turn_id, step_id=turn.steps[0].step_id),
            agents_pb2.GetStepRequest(**no_ids, turn_id=turn.turn_id, step_id="s"),
        )
        await refused(
            agents.CreateTurn,
            agents_pb2.CreateTurnRequest(**ids, messages=[hello]),
            agents_pb2.CreateTurnRequest(**no_ids, messages=[hello]),
        )
        await refused(
            agents.ResumeTurn,
            agents_pb2.ResumeTurnRequest(
                **ids,
                turn_id=turn.turn_id,
                tool_responses=[agents_pb2.ToolResponse(call_id="c", tool_name="t")],
            ),
            agents_pb2.ResumeTurnRequest(
                **no_ids,
                turn_id=turn.turn_id,
                tool_responses=[agents_pb2.ToolResponse(call_id="c", tool_name="t")],
            ),
        )
        await refused(
            agents.ForkAgentSession,
            agents_pb2.ForkAgentSessionRequest(**ids, turn_id=turn.turn_id),
            agents_pb2.ForkAgentSessionRequest(**no_ids, turn_id=turn.turn_id),
        )
        await refused(
            agents.DeleteAgentSession,
            agents_pb2.DeleteAgentSessionRequest(**ids),
            agents_pb2.DeleteAgentSessionRequest(**no_ids),
        )
        with pytest.raises(grpc.aio.AioRpcError) as streamed:
            async for _ in agents.StreamTurn(
                agents_pb2.CreateTurnRequest(**ids, messages=[hello]), metadata=b
            ):
                pass
        assert streamed.value.code() == grpc.StatusCode.NOT_FOUND
        listed = await agents.ListAgentSessions(
            agents_pb2.ListAgentSessionsRequest(agent_id=agent_id), metadata=b
        )
        assert list(listed.data) == []
        await refused(
            responses.GetResponse,
            responses_pb2.GetResponseRequest(response_id=response.id),
            responses_pb2.GetResponseRequest(response_id=nobody),
        )
        await refused(
            responses.ListInputItems,
            responses_pb2.ListInputItemsRequest(response_id=response.id),
            responses_pb2.ListInputItemsRequest(response_id=nobody),
        )
        await refused(
            responses.DeleteResponse,
            responses_pb2.DeleteResponseRequest(response_id=response.id),
            responses_pb2.DeleteResponseRequest(response_id=nobody),
        )
        # Continuing A's conversation would read it (and run in A's session).
        await refused(
            responses.CreateResponse,
            responses_pb2.CreateResponseRequest(
                model="scripted",
                input=struct_pb2.Value(string_value="and what did A ask?"),
                previous_response_id=response.id,
            ),
            responses_pb2.CreateResponseRequest(
                model="scripted",
                input=struct_pb2.Value(string_value="and what did A ask?"),
                previous_response_id=nobody,
            ),
        )
        listed_responses = await responses.ListResponses(
            responses_pb2.ListResponsesRequest(), metadata=b
        )
        assert list(listed_responses.data) == []
        # The agent is shared: deleting it (and so every team's sessions) takes a key
        # confined to no namespace.
        with pytest.raises(grpc.aio.AioRpcError) as deleting:
            await agents.DeleteAgent(agents_pb2.DeleteAgentRequest(agent_id=agent_id), metadata=b)
        assert deleting.value.code() == grpc.StatusCode.PERMISSION_DENIED

        # Team A's are all there; admin sees them too.
        got = await agents.GetAgentSession(agents_pb2.GetAgentSessionRequest(**ids), metadata=a)
        assert [t.turn_id for t in got.session.turns] == [turn.turn_id]
        assert (
            await responses.GetResponse(
                responses_pb2.GetResponseRequest(response_id=response.id), metadata=a
            )
        ).response.status == "completed"
        for who in (a, admin_md):
            mine = await agents.ListAgentSessions(
                agents_pb2.ListAgentSessionsRequest(agent_id=agent_id), metadata=who
            )
            assert [s.session_id for s in mine.data] == [session_id]
            theirs_listed = await responses.ListResponses(
                responses_pb2.ListResponsesRequest(), metadata=who
            )
            assert [r.id for r in theirs_listed.data] == [response.id]
        await agents.DeleteAgent(
            agents_pb2.DeleteAgentRequest(agent_id=agent_id), metadata=admin_md
        )
