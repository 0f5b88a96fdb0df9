# mypy: disable-error-code="arg-type,list-item,union-attr,typeddict-item"
# mypy: disable-error-code="operator,misc,index,attr-defined"
# (the clients are called with plain JSON dicts and their union results read as the
# tests know them to be, as their users do; their TypedDicts and unions are not the point)
"""Forking an agent session at a turn, through REST (the gateway) and gRPC."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from llama_stack_client import AsyncLlamaStackClient, BadRequestError, NotFoundError

from llama_mesh.v1 import agents_pb2, agents_pb2_grpc

from .conftest import AgentsMesh, echo
from .test_turns import capitals

CONFIG: dict[str, Any] = {
    "model": "scripted",
    "instructions": "be brief",
    "client_tools": [
        {
            "name": "lookup_capital",
            "description": "Look up a capital.",
            "parameters": [
                {"name": "country", "parameter_type": "string", "description": "", "required": True}
            ],
        }
    ],
}


async def _say(client: AsyncLlamaStackClient, agent_id: str, session_id: str, text: str) -> Any:
    return await client.agents.turn.create(
        agent_id=agent_id,
        session_id=session_id,
        messages=[{"role": "user", "content": text}],
        stream=False,
    )


def _conversation(agents_mesh: AgentsMesh, index: int) -> list[tuple[str, str]]:
    return [(m["role"], m.get("content") or "") for m in agents_mesh.model.requests[index].messages]


async def test_a_fork_continues_from_the_turn_and_the_original_is_untouched(
    agents_mesh: AgentsMesh, client: AsyncLlamaStackClient
) -> None:
    agents_mesh.model.respond_with(echo)
    agent_id = (await client.agents.create(agent_config=CONFIG)).agent_id
    session_id = (await client.agents.session.create(agent_id, session_name="main")).session_id
    first = await _say(client, agent_id, session_id, "one")
    second = await _say(client, agent_id, session_id, "two")
    forked = await client.post(
        f"/v1/agents/{agent_id}/session/{session_id}:fork",
        body={"turn_id": first.turn_id},
        cast_to=object,
    )
    fork_id = forked["session_id"]
    assert fork_id != session_id
    in_fork = await _say(client, agent_id, fork_id, "three")
    assert in_fork.output_message.content == "ECHO(2): three"
    assert _conversation(agents_mesh, 2) == [
        ("system", "be brief"),
        ("user", "one"),
        ("assistant", "ECHO(1): one"),
        ("user", "three"),
    ]
    in_original = await _say(client, agent_id, session_id, "four")
    assert in_original.output_message.content == "ECHO(3): four"
    session = await client.agents.session.retrieve(fork_id, agent_id=agent_id)
    assert session.session_name == "main (fork)" and session.turns[0].turn_id == in_fork.turn_id
    original = await client.agents.session.retrieve(session_id, agent_id=agent_id)
    # In creation order.
    assert [t.turn_id for t in original.turns] == [
        first.turn_id,
        second.turn_id,
        in_original.turn_id,
    ]


async def test_a_fork_keeps_a_turns_client_tool_calls(
    agents_mesh: AgentsMesh, client: AsyncLlamaStackClient
) -> None:
    agents_mesh.model.respond_with(capitals)
    agent_id = (await client.agents.create(agent_config=CONFIG)).agent_id
    session_id = (await client.agents.session.create(agent_id, session_name="s")).session_id
    waiting = await _say(client, agent_id, session_id, "capital of France?")
    done = await client.agents.turn.resume(
        waiting.turn_id,
        agent_id=agent_id,
        session_id=session_id,
        tool_responses=[{"call_id": "call_fr", "tool_name": "lookup_capital", "content": "Paris"}],
    )
    assert done.output_message.content == "TOOL SAID: Paris"
    stub = agents_pb2_grpc.AgentsAPIStub(agents_mesh.channel)
    forked = await stub.ForkAgentSession(
        agents_pb2.ForkAgentSessionRequest(
            agent_id=agent_id, session_id=session_id, turn_id=done.turn_id, session_name="f"
        )
    )
    agents_mesh.model.respond_with(echo)
    await _say(client, agent_id, forked.session_id, "and Spain?")
    messages = agents_mesh.model.requests[-1].messages
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]
    assert messages[2]["tool_calls"][0]["id"] == "call_fr"
    assert messages[3] == {"role": "tool", "content": "Paris", "tool_call_id": "call_fr"}


async def test_forking_at_an_unknown_or_unfinished_turn(
    agents_mesh: AgentsMesh, client: AsyncLlamaStackClient
) -> None:
    agents_mesh.model.respond_with(capitals)
    agent_id = (await client.agents.create(agent_config=CONFIG)).agent_id
    session_id = (await client.agents.session.create(agent_id, session_name="s")).session_id
    waiting = await _say(client, agent_id, session_id, "capital of France?")
    path = f"/v1/agents/{agent_id}/session/{session_id}:fork"
    with pytest.raises(NotFoundError):
        await client.post(path, body={"turn_id": "no-such-turn"}, cast_to=object)
    with pytest.raises(BadRequestError) as unfinished:
        await client.post(path, body={"turn_id": waiting.turn_id}, cast_to=object)
    assert "has not completed (it is waiting_for_input)" in unfinished.value.body["detail"]
    stub = agents_pb2_grpc.AgentsAPIStub(agents_mesh.channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ForkAgentSession(
            agents_pb2.ForkAgentSessionRequest(
                agent_id=agent_id, session_id=session_id, turn_id=waiting.turn_id
            )
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
