# mypy: disable-error-code="arg-type,list-item,union-attr,typeddict-item"
# mypy: disable-error-code="operator,misc,index,attr-defined"
# (the clients are called with plain JSON dicts and their union results read as the
# tests know them to be, as their users do; their TypedDicts and unions are not the point)
"""Bad input to turns: the right status over REST (so the clients raise their own
errors) and over gRPC; and grpcurl drives a turn through reflection."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from llama_stack_client import AsyncLlamaStackClient, BadRequestError, NotFoundError

from llama_mesh.v1 import agents_pb2, agents_pb2_grpc

from .conftest import AgentsMesh, echo
from .test_turns import capitals

GRPCURL = Path(sys.executable).parent / "grpcurl"
TOOL = {
    "name": "lookup_capital",
    "description": "Look up a capital.",
    "parameters": [
        {"name": "country", "parameter_type": "string", "description": "", "required": True}
    ],
}
CONFIG: dict[str, Any] = {"model": "scripted", "instructions": "x", "client_tools": [TOOL]}
HELLO = [{"role": "user", "content": "hello"}]


async def _turn(client: AsyncLlamaStackClient, **fields: Any) -> tuple[str, str, Any]:
    agent_id = (await client.agents.create(agent_config=CONFIG)).agent_id
    session_id = (await client.agents.session.create(agent_id, session_name="s")).session_id
    turn = await client.agents.turn.create(
        agent_id=agent_id, session_id=session_id, messages=HELLO, stream=False, **fields
    )
    return agent_id, session_id, turn


async def test_a_turn_without_stream_returns_the_turn(
    agents_mesh: AgentsMesh, client: AsyncLlamaStackClient
) -> None:
    """llama-stack 0.2.12 answers 501 here; the mesh runs the turn and returns it."""
    agents_mesh.model.respond_with(echo)
    agent_id, session_id, turn = await _turn(client)
    assert turn.output_message.content == "ECHO(1): hello"
    session = await client.agents.session.retrieve(session_id, agent_id=agent_id)
    assert [t.turn_id for t in session.turns] == [turn.turn_id]
    assert session.turns[0].steps[0].step_id == turn.steps[0].step_id


async def test_unknown_turns_and_steps_are_not_found(
    agents_mesh: AgentsMesh, client: AsyncLlamaStackClient
) -> None:
    """404, where llama-stack 0.2.12 answers 200 `null` (turn) or 400 (step)."""
    agents_mesh.model.respond_with(echo)
    agent_id, session_id, turn = await _turn(client)
    with pytest.raises(NotFoundError) as no_turn:
        await client.agents.turn.retrieve("no-such-turn", agent_id=agent_id, session_id=session_id)
    assert no_turn.value.body == {"detail": "turn 'no-such-turn' not found"}
    with pytest.raises(NotFoundError):
        await client.agents.steps.retrieve(
            "no-such-step", agent_id=agent_id, session_id=session_id, turn_id=turn.turn_id
        )
    for stream in (False, True):
        with pytest.raises(NotFoundError):  # before any event: a plain 404, not an SSE error
            await client.agents.turn.create(
                agent_id=agent_id, session_id="no-such-session", messages=HELLO, stream=stream
            )
        with pytest.raises(NotFoundError):
            await client.agents.turn.create(
                agent_id="no-such-agent", session_id=session_id, messages=HELLO, stream=stream
            )


async def test_resume_of_a_turn_that_does_not_wait_is_a_400(
    agents_mesh: AgentsMesh, client: AsyncLlamaStackClient
) -> None:
    """llama-stack 0.2.12 runs a finished turn again; the mesh refuses."""
    agents_mesh.model.respond_with(echo)
    agent_id, session_id, turn = await _turn(client)
    response = {"call_id": "c1", "tool_name": "x", "content": "y"}
    for stream in (False, True):
        with pytest.raises(BadRequestError) as refused:
            await client.agents.turn.resume(
                turn.turn_id,
                agent_id=agent_id,
                session_id=session_id,
                tool_responses=[response],
                stream=stream,
            )
        assert refused.value.body == {
            "detail": f"turn {turn.turn_id!r} is not awaiting tool responses: it has "
            "completed; only a turn that ended with turn_awaiting_input can be resumed"
        }
    assert len(agents_mesh.model.requests) == 1  # nothing ran again


async def test_resume_must_answer_the_calls_the_turn_waits_for(
    agents_mesh: AgentsMesh, client: AsyncLlamaStackClient
) -> None:
    agents_mesh.model.respond_with(capitals)
    agent_id, session_id, waiting = await _turn(client)
    assert waiting.output_message.stop_reason == "end_of_message"
    assert waiting.output_message.tool_calls[0].call_id == "call_fr"
    wrong = {"call_id": "call_xx", "tool_name": "lookup_capital", "content": "?"}
    with pytest.raises(BadRequestError) as bad:
        await client.agents.turn.resume(
            waiting.turn_id, agent_id=agent_id, session_id=session_id, tool_responses=[wrong]
        )
    assert bad.value.body["detail"].startswith("tool_responses: ")
    right = {"call_id": "call_fr", "tool_name": "lookup_capital", "content": "Paris"}
    done = await client.agents.turn.resume(
        waiting.turn_id, agent_id=agent_id, session_id=session_id, tool_responses=[right]
    )
    assert done.output_message.content == "TOOL SAID: Paris"


async def test_malformed_turns_are_400s_naming_the_field(
    agents_mesh: AgentsMesh, client: AsyncLlamaStackClient
) -> None:
    agent_id = (await client.agents.create(agent_config=CONFIG)).agent_id
    session_id = (await client.agents.session.create(agent_id, session_name="s")).session_id
    with pytest.raises(BadRequestError) as empty:
        await client.agents.turn.create(agent_id=agent_id, session_id=session_id, messages=[])
    assert empty.value.body["detail"].startswith("messages: ")
    with pytest.raises(BadRequestError) as role:
        await client.post(
            f"/v1/agents/{agent_id}/session/{session_id}/turn",
            body={"messages": [{"role": "robot", "content": "hi"}]},
            cast_to=object,
        )
    assert "role 'robot' is not one of 'user', 'tool'" in role.value.body["detail"]
    with pytest.raises(BadRequestError) as group:
        await client.agents.turn.create(
            agent_id=agent_id, session_id=session_id, messages=HELLO, toolgroups=["no-such"]
        )
    assert group.value.body["detail"].startswith("toolgroups[0]: ")


async def test_grpc_status_codes(agents_mesh: AgentsMesh, client: AsyncLlamaStackClient) -> None:
    agents_mesh.model.respond_with(echo)
    agent_id, session_id, turn = await _turn(client)
    stub = agents_pb2_grpc.AgentsAPIStub(agents_mesh.channel)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetTurn(
            agents_pb2.GetTurnRequest(agent_id=agent_id, session_id=session_id, turn_id="nope")
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as finished:
        await stub.ResumeTurn(
            agents_pb2.ResumeTurnRequest(
                agent_id=agent_id,
                session_id=session_id,
                turn_id=turn.turn_id,
                tool_responses=[agents_pb2.ToolResponse(call_id="c", tool_name="t")],
            )
        )
    assert finished.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stub.CreateTurn(
            agents_pb2.CreateTurnRequest(agent_id=agent_id, session_id=session_id)
        )
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(empty.value)
    assert status is not None
    violation = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(violation)
    assert violation.field_violations[0].field == "messages"
    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        async for _ in stub.StreamTurn(
            agents_pb2.CreateTurnRequest(agent_id=agent_id, session_id="nope")
        ):
            pass
    assert streamed.value.code() == grpc.StatusCode.NOT_FOUND


async def _grpcurl(address: str, method: str, request: dict[str, Any]) -> list[Any]:
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-plaintext",
        "-d",
        json.dumps(request),
        address,
        f"llama_mesh.v1.AgentsAPI/{method}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    decoder = json.JSONDecoder()
    text, found = stdout.decode().strip(), []
    while text:
        value, end = decoder.raw_decode(text)
        found.append(value)
        text = text[end:].strip()
    return found


async def test_grpcurl_drives_a_turn_through_reflection(agents_mesh: AgentsMesh) -> None:
    agents_mesh.model.respond_with(echo)
    address = agents_mesh.address
    [agent] = await _grpcurl(
        address, "CreateAgent", {"agent_config": {"model": "scripted", "instructions": "x"}}
    )
    [session] = await _grpcurl(
        address, "CreateAgentSession", {"agent_id": agent["agent_id"], "session_name": "g"}
    )
    events = await _grpcurl(
        address,
        "StreamTurn",
        {
            "agent_id": agent["agent_id"],
            "session_id": session["session_id"],
            "messages": [{"user": {"content": "from grpcurl"}}],
        },
    )
    kinds = [next(iter(e["event"]["payload"])) for e in events]
    assert kinds[0] == "turn_start" and kinds[1] == "step_start" and kinds[-1] == "turn_complete"
    turn = events[-1]["event"]["payload"]["turn_complete"]["turn"]
    assert turn["output_message"]["content"] == "ECHO(1): from grpcurl"
