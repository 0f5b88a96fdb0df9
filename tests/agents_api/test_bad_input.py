# mypy: disable-error-code="arg-type,list-item"
# (the openai SDK is called with plain JSON dicts, as its users do; its TypedDicts are
# not the point)
"""Bad input at the Agents and Responses APIs' edges, as a careless client or an
attacker sends it: the right status naming the field, before anything is stored or
run; never INTERNAL, and nothing stored that breaks a later read."""

from __future__ import annotations

import math
from typing import Any

import grpc
import httpx
import openai
import pytest
from google.protobuf import struct_pb2

from llama_mesh.core.json_values import to_struct
from llama_mesh.core.limits import KIB, MAX_AGENT_CONFIG_BYTES
from llama_mesh.v1 import agents_pb2 as ag
from llama_mesh.v1 import agents_pb2_grpc, control_plane_pb2_grpc, resources_pb2, responses_pb2_grpc
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import responses_pb2 as rs

from .conftest import AgentsMesh, echo
from .test_responses import WEATHER, oai, weather

__all__ = ["oai"]  # the fixture, shared with test_responses.py

NAN = struct_pb2.Value(number_value=math.nan)


async def _refused(call: object, request: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        response = call(request)  # type: ignore[operator]
        if hasattr(response, "__aiter__"):
            async for _ in response:
                pass
        else:
            await response
    return raised.value


async def test_a_number_json_cannot_hold_is_refused_naming_its_field(
    agents_mesh: AgentsMesh,
) -> None:
    """NaN and infinities gave INTERNAL (ValueError) in turns and responses; an agent
    holding one was stored, and then every GET /v1/agents was a 500."""
    agents_mesh.model.respond_with(echo)
    agents = agents_pb2_grpc.AgentsAPIStub(agents_mesh.channel)
    responses = responses_pb2_grpc.ResponsesAPIStub(agents_mesh.channel)
    control = control_plane_pb2_grpc.ControlPlaneAPIStub(agents_mesh.channel)
    tool = ag.ToolDef(
        name="t", parameters=[ag.ToolParameter(name="p", parameter_type="number", default=NAN)]
    )
    config = ag.AgentConfig(model="scripted", instructions="x", client_tools=[tool])
    err = await _refused(agents.CreateAgent, ag.CreateAgentRequest(agent_config=config))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "agent_config.client_tools[0].parameters[0].default is NaN, which JSON cannot "
        "hold: send a finite number"
    )
    async with httpx.AsyncClient(base_url=agents_mesh.url) as http:
        assert (await http.get("/v1/agents")).status_code == 200

    config = ag.AgentConfig(model="scripted", instructions="x")
    agent_id = (await agents.CreateAgent(ag.CreateAgentRequest(agent_config=config))).agent_id
    session = await agents.CreateAgentSession(
        ag.CreateAgentSessionRequest(agent_id=agent_id, session_name="s")
    )
    turn = ag.CreateTurnRequest(
        agent_id=agent_id,
        session_id=session.session_id,
        messages=[ag.InputMessage(user=ag.UserMessage(content=NAN))],
    )
    for turn_call in (agents.CreateTurn, agents.StreamTurn):
        err = await _refused(turn_call, turn)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(err.details()).startswith("messages[0].user.content is NaN")

    item = struct_pb2.Value()
    item.list_value.values.add().struct_value.update({"role": "user", "content": "hi"})
    item.list_value.values[0].struct_value.fields["n"].number_value = -math.inf
    request = rs.CreateResponseRequest(model="scripted", input=item)
    for response_call in (responses.CreateResponse, responses.StreamResponse):
        err = await _refused(response_call, request)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(err.details()).startswith("input[0].n is -Infinity")

    session_name = (await control.CreateSession(cp.CreateSessionRequest())).session.name
    task = resources_pb2.Task(service="agents", input=to_struct({"agent_id": "a", "n": math.inf}))
    err = await _refused(control.CreateTask, cp.CreateTaskRequest(parent=session_name, task=task))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(err.details()).startswith("task.input.n is Infinity")
    assert agents_mesh.model.requests == []


async def test_an_agent_config_over_its_limit_is_a_400_naming_it(agents_mesh: AgentsMesh) -> None:
    """One over NATS's max_payload was a 500 (MaxPayloadError); one of 300 KiB was
    stored, and then every turn of the agent was refused for its size."""
    async with httpx.AsyncClient(base_url=agents_mesh.url, timeout=30) as http:
        for field, size in (("instructions", 300 * KIB), ("name", 1 << 20)):
            config = {"model": "scripted", "instructions": "x", field: "x" * size}
            response = await http.post("/v1/agents", json={"agent_config": config})
            assert response.status_code == 400, response.text
            detail = response.json()["detail"]
            assert detail.startswith("agent_config is ")
            assert f"over the limit of {MAX_AGENT_CONFIG_BYTES} bytes" in detail
        assert (await http.get("/v1/agents")).json()["data"] == []


FUNCTION = {"type": "function", "name": "f", "parameters": {"type": "object"}}


# A field of the request, the param the SDK's error names, and what its message says.
MALFORMED: list[tuple[dict[str, Any], str, str]] = [
    # The model refused these: the response failed with a server_error.
    ({"temperature": 9}, "temperature", "must be between 0 and 2 (got 9.0)"),
    ({"temperature": -1}, "temperature", "must be between 0 and 2"),
    ({"top_p": 7}, "top_p", "must be in (0, 1]"),
    ({"top_p": 0}, "top_p", "must be in (0, 1]"),
    ({"max_output_tokens": -5}, "max_output_tokens", "must be at least 1"),
    ({"max_output_tokens": 0}, "max_output_tokens", "must be at least 1"),
    # Echoed in the response as sent.
    ({"truncation": "middle"}, "truncation", "'middle' is not one of ['auto', 'disabled']"),
    # These ran, the tools offered under names no model takes.
    ({"tools": [{**FUNCTION, "name": "a b"}]}, "tools[0].name", "is not a tool name"),
    ({"tools": [FUNCTION, FUNCTION]}, "tools[1].name", "two tools are named 'f'"),
    (
        {"tools": [{**FUNCTION, "parameters": {"type": "string"}}]},
        "tools[0].parameters",
        "the JSON Schema of an object",
    ),
    (
        {"tools": [{**FUNCTION, "parameters": {"type": "object", "required": "x"}}]},
        "tools[0].parameters.required",
        "a list of property names",
    ),
    ({"tool_choice": "nope"}, "tool_choice", "'nope' is not 'auto', 'none', 'required'"),
    (
        {"text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": 5}}}},
        "text.format.schema",
        "the JSON Schema of an object ('type': 'object'), not 5",
    ),
    (
        {"tools": [FUNCTION], "tool_choice": {"type": "function", "name": "g"}},
        "tool_choice",
        "naming one of the tools (['f'])",
    ),
    # The response failed with IndexError (no user message) in the agent.
    (
        {"input": [{"type": "function_call_output", "call_id": "zz", "output": "o"}]},
        "input[0].call_id",
        "no function_call with call_id 'zz' comes before it",
    ),
    (
        {"input": [{"role": "assistant", "content": "x"}]},
        "input",
        "the conversation has no message with role 'user'",
    ),
    # Stored with the response: over NATS's max_payload, a 500 (MaxPayloadError).
    ({"metadata": {"k": "x" * (1 << 20)}}, "metadata.k", "over the limit of 512"),
    ({"metadata": {str(i): "v" for i in range(17)}}, "metadata", "at most 16 pairs"),
    ({"metadata": {"k" * 65: "v"}}, "metadata", "a key is 65 characters, over the limit of 64"),
    ({"metadata": {"k": 5}}, "metadata.k", "a metadata value is text"),
    ({"user": "x" * (1 << 20)}, "user", "over the limit of 256 characters"),
]


async def test_a_malformed_response_request_is_a_400_before_anything_runs(
    agents_mesh: AgentsMesh, oai: openai.AsyncOpenAI
) -> None:
    agents_mesh.model.respond_with(echo)
    for fields, param, message in MALFORMED:
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as bad:
                await oai.responses.create(
                    **{"model": "scripted", "input": "hi", **fields, "stream": stream}
                )
            assert message in bad.value.message, fields
            assert bad.value.param == param, fields
    assert agents_mesh.model.requests == []
    async with httpx.AsyncClient(base_url=agents_mesh.url) as http:
        assert (await http.get("/v1/openai/v1/responses")).json()["data"] == []


async def test_a_function_call_output_may_answer_a_call_of_its_chain(
    agents_mesh: AgentsMesh, oai: openai.AsyncOpenAI
) -> None:
    agents_mesh.model.respond_with(weather)
    first = await oai.responses.create(model="scripted", input="weather?", tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    answer = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    done = await oai.responses.create(
        model="scripted", input=[answer], previous_response_id=first.id, tools=[WEATHER]
    )
    assert done.output_text == "It is sunny."


# A user message's content, and what the 400 (501 for an image) says. Each ran: the
# model read its JSON as if the user had typed it (an image's URL included), or, empty,
# the replica refused it after the turn had started.
CONTENTS: list[tuple[Any, int, str]] = [
    (5, 400, "messages[0].content: content is text, a text item"),
    (None, 400, "messages[0].content: content is text"),
    ({"a": 1}, 400, 'not {"a": 1}'),
    (["hi"], 400, "messages[0].content[0]: content is text"),
    ([{"type": "text"}], 400, "messages[0].content[0]: content is text"),
    ({"type": "image", "image": {"url": {"uri": "http://x"}}}, 501, "images are not supported"),
    ("", 400, "messages[0].content is empty"),
    ([{"type": "text", "text": " "}], 400, "messages[0].content is empty"),
]


async def test_a_turns_messages_are_text_and_its_tool_choice_a_tool(
    agents_mesh: AgentsMesh,
) -> None:
    agents_mesh.model.respond_with(echo)
    async with httpx.AsyncClient(base_url=agents_mesh.url, timeout=30) as http:
        config = {"model": "scripted", "instructions": "x"}
        agent = (await http.post("/v1/agents", json={"agent_config": config})).json()["agent_id"]
        session = await http.post(f"/v1/agents/{agent}/session", json={"session_name": "s"})
        turns = f"/v1/agents/{agent}/session/{session.json()['session_id']}/turn"
        for content, status, detail in CONTENTS:
            for stream in (False, True):
                message = {"role": "user", "content": content}
                response = await http.post(turns, json={"messages": [message], "stream": stream})
                assert response.status_code == status, (content, response.text)
                assert detail in response.json()["detail"], content
        choice = {"tool_choice": "nope"}
        hello = [{"role": "user", "content": "hello"}]
        response = await http.post(turns, json={"messages": hello, "tool_config": choice})
        assert response.status_code == 400
        assert response.json()["detail"].startswith("tool_config.tool_choice: 'nope' is not")
        behavior = {"system_message_behavior": "merge"}
        response = await http.post(turns, json={"messages": hello, "tool_config": behavior})
        assert response.status_code == 400
        assert response.json()["detail"].startswith("tool_config.system_message_behavior: ")
        assert agents_mesh.model.requests == []

        text = [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]
        turn = await http.post(turns, json={"messages": [{"role": "user", "content": text}]})
        assert turn.json()["output_message"]["content"] == "ECHO(1): hello"


async def test_a_first_turn_of_tool_messages_alone_is_a_400(agents_mesh: AgentsMesh) -> None:
    """It was a 500: IndexError in the agent, which needs a user's message."""
    async with httpx.AsyncClient(base_url=agents_mesh.url, timeout=30) as http:
        config = {"model": "scripted", "instructions": "x"}
        agent = (await http.post("/v1/agents", json={"agent_config": config})).json()["agent_id"]
        session = await http.post(f"/v1/agents/{agent}/session", json={"session_name": "s"})
        turns = f"/v1/agents/{agent}/session/{session.json()['session_id']}/turn"
        tool = {"role": "tool", "call_id": "c1", "content": "42"}
        response = await http.post(turns, json={"messages": [tool], "stream": False})
        assert response.status_code == 400, response.text
        assert "a turn needs a user's message" in response.json()["detail"]
        assert agents_mesh.model.requests == []


async def test_a_response_id_that_cannot_be_one_is_not_found_as_any_unknown_one(
    agents_mesh: AgentsMesh, oai: openai.AsyncOpenAI
) -> None:
    """Its error's code was `not_found`, where an unknown one's is `response_not_found`."""
    for response_id in ("resp.x", "resp x*", "-resp"):
        with pytest.raises(openai.NotFoundError) as missing:
            await oai.responses.retrieve(response_id)
        assert missing.value.code == "response_not_found"
        with pytest.raises(openai.NotFoundError) as previous:
            await oai.responses.create(
                model="scripted", input="x", previous_response_id=response_id
            )
        assert previous.value.code == "response_not_found"
