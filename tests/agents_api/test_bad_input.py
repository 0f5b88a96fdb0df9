"""Bad input at the Agents and Responses APIs' edges, as a careless client or an
attacker sends it: the right status naming the field, before anything is stored or
run; never INTERNAL, and nothing stored that breaks a later read."""

from __future__ import annotations

import math

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2

from llama_mesh.core.json_values import to_struct
from llama_mesh.core.limits import KIB, MAX_AGENT_CONFIG_BYTES
from llama_mesh.v1 import agents_pb2 as ag
from llama_mesh.v1 import agents_pb2_grpc, control_plane_pb2_grpc, resources_pb2, responses_pb2_grpc
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import responses_pb2 as rs

from .conftest import AgentsMesh, echo

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
