# mypy: disable-error-code="arg-type,list-item,union-attr,typeddict-item"
# mypy: disable-error-code="operator,misc,index,attr-defined"
# (the clients are called with plain JSON dicts and their union results read as the
# tests know them to be, as their users do; their TypedDicts and unions are not the point)
"""Turns through the real gateway with the real llama-stack-client: the built-in agent
service runs them on the scripted model."""

from __future__ import annotations

import asyncio
from typing import Any

from llama_stack_client import AsyncLlamaStackClient, LlamaStackClient
from llama_stack_client import AsyncLlamaStackClient as LlamaStackClientAsync
from llama_stack_client.lib.agents.agent import Agent
from llama_stack_client.lib.agents.client_tool import client_tool
from llama_stack_client.types.agents import Turn
from llama_stack_client.types.inference_step import InferenceStep

from llama_mesh.testing import RecordedRequest, Reply, ToolCall

from .conftest import AgentsMesh, echo

CONFIG: dict[str, Any] = {"model": "scripted", "instructions": "be brief"}


async def _agent_session(client: AsyncLlamaStackClient, **config: Any) -> tuple[str, str]:
    agent_id = (await client.agents.create(agent_config={**CONFIG, **config})).agent_id
    session = await client.agents.session.create(agent_id, session_name="s")
    return agent_id, session.session_id


async def test_a_streamed_turn_is_its_events_in_order(
    agents_mesh: AgentsMesh, client: AsyncLlamaStackClient
) -> None:
    agents_mesh.model.respond_with(echo)
    agent_id, session_id = await _agent_session(client)
    stream = await client.agents.turn.create(
        session_id=session_id,
        agent_id=agent_id,
        messages=[{"role": "user", "content": "hello mesh"}],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    payloads = [c.event.payload for c in chunks]
    kinds = [p.event_type for p in payloads]
    text = "ECHO(1): hello mesh"
    deltas = (len(text) + 3) // 4
    assert kinds == ["turn_start", "step_start"] + ["step_progress"] * deltas + [
        "step_complete",
        "turn_complete",
    ]
    assert "".join(p.delta.text for p in payloads if p.event_type == "step_progress") == text
    step = payloads[-2].step_details
    assert isinstance(step, InferenceStep)
    assert step.api_model_response.content == text
    turn = payloads[-1].turn
    assert isinstance(turn, Turn)
    assert turn.turn_id == payloads[0].turn_id
    assert turn.output_message.content == text
    assert turn.output_message.stop_reason == "end_of_turn"
    assert [s.step_id for s in turn.steps] == [step.step_id]
    assert turn.started_at <= turn.steps[0].started_at <= turn.steps[0].completed_at
    # The model was told the instructions and the message.
    request = agents_mesh.model.requests[0]
    assert [m["role"] for m in request.messages] == ["system", "user"]
    assert request.messages[0]["content"] == "be brief"


def capitals(request: RecordedRequest) -> Reply:
    """Calls `lookup_capital` for a question about a capital; answers with what the
    tool said once it has."""
    last = request.messages[-1]
    if last["role"] == "tool":
        return Reply(f"TOOL SAID: {last['content']}")
    return Reply(tool_calls=[ToolCall("lookup_capital", {"country": "France"}, id="call_fr")])


def lookup_capital(country: str) -> str:
    """Look up the capital of a country.

    :param country: the country's name
    :returns: the capital
    """
    return f"Paris-of-{country}"


async def test_the_agent_helper_runs_a_client_tool_and_resumes_the_turn(
    agents_mesh: AgentsMesh,
) -> None:
    """llama-stack-client's own Agent helper: the turn waits for the client tool, the
    helper runs it and resumes, the turn completes; one turn with three steps."""
    agents_mesh.model.respond_with(capitals)

    def run() -> tuple[list[Any], str, str, str]:
        with LlamaStackClient(base_url=agents_mesh.url, max_retries=0) as sync_client:
            agent = Agent(
                sync_client,
                model="scripted",
                instructions="You are terse.",
                tools=[client_tool(lookup_capital)],
            )
            session_id = agent.create_session("helper")
            chunks = list(
                agent.create_turn(
                    messages=[{"role": "user", "content": "lookup_capital for France"}],
                    session_id=session_id,
                )
            )
            return chunks, agent.agent_id, session_id, chunks[-1].event.payload.turn.turn_id

    chunks, agent_id, session_id, turn_id = await asyncio.to_thread(run)
    kinds = [c.event.payload.event_type for c in chunks]
    assert kinds[0] == "turn_start"
    waiting = kinds.index("turn_awaiting_input")
    assert kinds[waiting + 1 : waiting + 2] == ["step_complete"]  # the tool execution
    assert kinds[-1] == "turn_complete"
    awaiting = chunks[waiting].event.payload.turn.output_message
    assert awaiting.stop_reason == "end_of_message"
    assert [(c.call_id, c.tool_name, c.arguments) for c in awaiting.tool_calls] == [
        ("call_fr", "lookup_capital", {"country": "France"})
    ]
    turn = chunks[-1].event.payload.turn
    assert turn.turn_id == chunks[waiting].event.payload.turn.turn_id  # the same turn
    assert turn.output_message.content == 'TOOL SAID: "Paris-of-France"'  # the helper's JSON
    assert [s.step_type for s in turn.steps] == ["inference", "tool_execution", "inference"]
    assert len({s.step_id for s in turn.steps}) == 3  # each step its own id
    execution = turn.steps[1]
    assert execution.tool_responses[0].content == '"Paris-of-France"'
    # The model got the tool's response as the answer to its call.
    second = agents_mesh.model.requests[1].messages
    assert second[-1] == {"role": "tool", "content": '"Paris-of-France"', "tool_call_id": "call_fr"}

    async with LlamaStackClientAsync(base_url=agents_mesh.url, max_retries=0) as client:
        again = await client.agents.turn.retrieve(turn_id, agent_id=agent_id, session_id=session_id)
        assert again.output_message.content == turn.output_message.content
        assert [s.step_id for s in again.steps] == [s.step_id for s in turn.steps]
        step = await client.agents.steps.retrieve(
            turn.steps[1].step_id, agent_id=agent_id, session_id=session_id, turn_id=turn_id
        )
        assert step.step.step_type == "tool_execution"
