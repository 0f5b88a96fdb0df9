"""Agents and sessions of the Agents API, through the real gateway with the real
llama-stack-client, and over gRPC with the status codes and details it promises."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from llama_stack_client import AsyncLlamaStackClient, BadRequestError, NotFoundError
from llama_stack_client.types.agents import Session
from llama_stack_client.types.shared_params.agent_config import AgentConfig

from llama_mesh.v1 import agents_pb2, agents_pb2_grpc, resources_pb2

from .conftest import ApiMesh, register, register_agents_service

CONFIG: dict[str, Any] = {"model": "scripted", "instructions": "be brief"}


def raw(config: dict[str, Any]) -> AgentConfig:
    """A config as sent: the server checks it, not the client's types (some are wrong
    on purpose)."""
    return cast(AgentConfig, config)


async def test_an_agent_is_created_read_listed_and_deleted(
    api_mesh: ApiMesh, llama: AsyncLlamaStackClient
) -> None:
    await register_agents_service(api_mesh.channel, "scripted")
    created = await llama.agents.create(agent_config=raw(CONFIG))
    agent = await llama.get(f"/v1/agents/{created.agent_id}", cast_to=object)
    assert agent["agent_id"] == created.agent_id  # type: ignore[index]
    config = agent["agent_config"]  # type: ignore[index]
    assert config["model"] == "scripted" and config["instructions"] == "be brief"
    # llama-stack's shape: every field present, null when unset, [] when empty.
    assert config["client_tools"] == [] and config["toolgroups"] == []
    assert config["tool_choice"] is None and config["response_format"] is None
    assert agent["created_at"].endswith("Z")  # type: ignore[index]

    second = await llama.agents.create(agent_config=raw({**CONFIG, "name": "second"}))
    listed = await llama.get("/v1/agents", cast_to=object)
    assert [a["agent_id"] for a in listed["data"]] == [created.agent_id, second.agent_id]  # type: ignore[index]
    assert listed["has_more"] is False  # type: ignore[index]
    page = await llama.get("/v1/agents?start_index=1&limit=1", cast_to=object)
    assert [a["agent_id"] for a in page["data"]] == [second.agent_id]  # type: ignore[index]

    session_id = (await llama.agents.session.create(created.agent_id, session_name="s")).session_id
    await llama.agents.delete(created.agent_id)
    with pytest.raises(NotFoundError):
        await llama.get(f"/v1/agents/{created.agent_id}", cast_to=object)
    with pytest.raises(NotFoundError):  # its sessions went with it
        await llama.agents.session.retrieve(session_id, agent_id=created.agent_id)
    with pytest.raises(NotFoundError):
        await llama.agents.delete(created.agent_id)


async def test_sessions_are_created_read_listed_and_deleted(
    api_mesh: ApiMesh, llama: AsyncLlamaStackClient
) -> None:
    await register_agents_service(api_mesh.channel, "scripted")
    agent_id = (await llama.agents.create(agent_config=raw(CONFIG))).agent_id
    first = (await llama.agents.session.create(agent_id, session_name="first")).session_id
    second = (await llama.agents.session.create(agent_id, session_name="second")).session_id

    session = await llama.agents.session.retrieve(first, agent_id=agent_id)
    assert isinstance(session, Session)
    assert session.session_id == first and session.session_name == "first"
    assert session.turns == []

    listed = await llama.get(f"/v1/agents/{agent_id}/sessions", cast_to=object)
    names = [s["session_name"] for s in listed["data"]]  # type: ignore[index]
    assert names == ["first", "second"]  # oldest first

    await llama.agents.session.delete(second, agent_id=agent_id)
    with pytest.raises(NotFoundError) as gone:
        await llama.agents.session.retrieve(second, agent_id=agent_id)
    assert gone.value.body == {"detail": f"session {second!r} not found"}
    other = (await llama.agents.create(agent_config=raw(CONFIG))).agent_id
    with pytest.raises(NotFoundError):  # a session is found only under its own agent
        await llama.agents.session.retrieve(first, agent_id=other)


async def test_an_agent_deployed_as_a_service_is_an_agent(
    api_mesh: ApiMesh, llama: AsyncLlamaStackClient
) -> None:
    await register(
        api_mesh.channel, "assistant", resources_pb2.SERVICE_KIND_AGENT, description="Adds."
    )
    await register(api_mesh.channel, "echo", resources_pb2.SERVICE_KIND_WORKFLOW)
    agent = await llama.get("/v1/agents/assistant", cast_to=object)
    assert agent["agent_id"] == "assistant"  # type: ignore[index]
    assert agent["agent_config"]["instructions"] == "Adds."  # type: ignore[index]
    listed = await llama.get("/v1/agents", cast_to=object)
    assert [a["agent_id"] for a in listed["data"]] == ["assistant"]  # type: ignore[index]
    session = await llama.agents.session.create("assistant", session_name="s")
    assert (
        await llama.agents.session.retrieve(session.session_id, agent_id="assistant")
    ).turns == []
    with pytest.raises(NotFoundError):  # a workflow is not an agent
        await llama.agents.session.create("echo", session_name="s")
    with pytest.raises(BadRequestError) as refused:
        await llama.agents.delete("assistant")
    assert "undeploy the service" in refused.value.body["detail"]  # type: ignore[index]


async def test_unknown_agents_and_sessions_are_not_found(llama: AsyncLlamaStackClient) -> None:
    """404 (NotFoundError), where llama-stack 0.2.12 answers 400."""
    with pytest.raises(NotFoundError) as missing:
        await llama.agents.session.create("no-such-agent", session_name="x")
    assert missing.value.status_code == 404
    assert missing.value.body == {"detail": "agent 'no-such-agent' not found"}
    with pytest.raises(NotFoundError):
        await llama.agents.session.retrieve("nope", agent_id="no-such-agent")
    with pytest.raises(NotFoundError):  # not even a possible id
        await llama.get("/v1/agents/a.b", cast_to=object)


async def test_a_malformed_agent_config_is_a_400_naming_the_field(
    api_mesh: ApiMesh, llama: AsyncLlamaStackClient
) -> None:
    await register_agents_service(api_mesh.channel, "scripted")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"model": "scripted"}, "agent_config.instructions"),
        ({"instructions": "x"}, "agent_config.model"),
        ({**CONFIG, "model": "no-such-model"}, "agent_config.model"),
        ({**CONFIG, "max_infer_iters": 0}, "agent_config.max_infer_iters"),
        ({**CONFIG, "toolgroups": ["no-such-service"]}, "agent_config.toolgroups[0]"),
        ({**CONFIG, "input_shields": ["no-such-shield"]}, "agent_config.input_shields[0]"),
        (
            {
                **CONFIG,
                "client_tools": [
                    {
                        "name": "f",
                        "parameters": [
                            {
                                "name": "x",
                                "parameter_type": "tensor",
                                "description": "",
                                "required": True,
                            }
                        ],
                    }
                ],
            },
            "agent_config.client_tools[0].parameters[0].parameter_type",
        ),
        ({**CONFIG, "tool_choice": "some_tool"}, "agent_config.tool_choice"),
        # These were stored as they came (NaN reached the model as frequency_penalty).
        (
            {**CONFIG, "sampling_params": {"repetition_penalty": "NaN"}},
            "agent_config.sampling_params.repetition_penalty",
        ),
        ({**CONFIG, "tool_prompt_format": "yaml"}, "agent_config.tool_prompt_format"),
        (
            {**CONFIG, "response_format": {"type": "json_schema", "json_schema": {"type": 5}}},
            "agent_config.response_format.json_schema",
        ),
        (
            {**CONFIG, "tool_config": {"system_message_behavior": "merge"}},
            "agent_config.tool_config.system_message_behavior",
        ),
    ]
    for config, field in cases:
        with pytest.raises(BadRequestError) as bad:
            await llama.agents.create(agent_config=raw(config))
        assert bad.value.body["detail"].startswith(f"{field}: "), (field, bad.value.body)  # type: ignore[index]
    with pytest.raises(BadRequestError) as typo:  # a field llama-stack does not have
        await llama.agents.create(agent_config=raw({**CONFIG, "modle": "x"}))
    assert "modle" in typo.value.body["detail"]  # type: ignore[index]


async def test_grpc_status_codes_and_details(api_mesh: ApiMesh) -> None:
    stub = agents_pb2_grpc.AgentsAPIStub(api_mesh.channel)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetAgent(agents_pb2.GetAgentRequest(agent_id="nope"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as no_service:
        await stub.CreateAgent(
            agents_pb2.CreateAgentRequest(
                agent_config=agents_pb2.AgentConfig(model="m", instructions="")
            )
        )
    assert no_service.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await register_agents_service(api_mesh.channel, "m")
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub.CreateAgent(
            agents_pb2.CreateAgentRequest(agent_config=agents_pb2.AgentConfig(model="m"))
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # An AioRpcError carries the trailers from_call reads; the stubs want a grpc.Call.
    status = rpc_status.from_call(cast(grpc.Call, bad.value))
    assert status is not None
    violations = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(violations)
    assert violations.field_violations[0].field == "agent_config.instructions"
    with pytest.raises(grpc.aio.AioRpcError) as rag:
        await stub.CreateAgent(
            agents_pb2.CreateAgentRequest(
                agent_config=agents_pb2.AgentConfig(
                    model="m", instructions="", toolgroups=[_value("builtin::rag")]
                )
            )
        )
    assert rag.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _value(text: str) -> Any:
    from google.protobuf import struct_pb2

    return struct_pb2.Value(string_value=text)
