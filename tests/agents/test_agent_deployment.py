"""Agents without agent code: `kind: agent` in a deployment file (a model of `models:`,
tools, tools of the mesh, a system prompt, a description), and `deploy_agent` from
Python. Real llama-index agents, real HTTP to the scripted model."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.tools import BaseTool
from llama_index.llms.openai import OpenAI
from workflows import Workflow

from llama_mesh.client import AsyncClient
from llama_mesh.config import ServiceConfig
from llama_mesh.config.models import ModelConfig
from llama_mesh.launch.deploy import (
    ControlPlaneConfig,
    NatsQueueConfig,
    WorkflowServiceConfig,
    deploy_agent,
    deploy_core,
)
from llama_mesh.launch.deployment import (
    DeploymentError,
    check_workflows,
    parse_deployment,
)
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.launch.service_builder import build_service
from llama_mesh.testing import Reply, ScriptedModel, ToolCall
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.agent_runner import AgentRunner
from llama_mesh.worker.models import build_llm, model_client
from llama_mesh.worker.workflow_runner import WorkflowRunner

from agent_services import SECRET_FACT, secret_tools
from mesh_workflows import EchoWorkflow

TESTS = Path(__file__).resolve().parents[1]


def deployment_text(model_url: str) -> str:
    return f"""\
name: agents
models:
  local/scripted:
    base_url: {model_url}
    model: scripted-1
    api_key_env: SCRIPTED_MODEL_KEY
    max_retries: 0
services:
  helper:
    kind: agent
    model: local/scripted
    description: Adds numbers and knows the secret fact.
    system_prompt: You answer in one sentence.
    path: {TESTS}
    tools: [agent_services:add]
    mesh_tools: [secret_tools]
"""


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(DeploymentError) as caught:
        d = parse_deployment(text, tmp_path / "deployment.yaml")
        check_workflows(d, tmp_path / "deployment.yaml")
    return caught.value.problems


async def test_an_agent_of_the_file_uses_its_model_tools_mesh_tools_and_prompt(
    nats: EmbeddedNats,
    model: ScriptedModel,
    model_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRIPTED_MODEL_KEY", "sk-from-the-environment")
    d = parse_deployment(deployment_text(model_url), tmp_path / "deployment.yaml")
    runner = build_service(d, "helper")
    assert isinstance(runner, AgentRunner) and isinstance(runner.agent, FunctionAgent)
    llm = runner.agent.llm
    assert isinstance(llm, OpenAI)
    client = llm._get_aclient()
    model.script(
        Reply(tool_calls=[ToolCall("add", {"a": 2, "b": 3}), ToolCall("get_the_secret_fact", {})]),
        Reply("2 + 3 = 5, and a baby llama is a cria."),
    )
    services: dict[str, Workflow | tuple[Workflow | WorkflowRunner, ServiceConfig]] = {
        "helper": (runner, ServiceConfig("helper")),
        "secret_tools": secret_tools,
    }
    async with LocalMesh(services, nats_url=nats.url) as mesh:
        registered = await mesh.client.get_service("helper")
        session = await mesh.client.create_session()
        result = await session.run("helper", user_msg="What is 2 + 3, and the secret fact?")
    # The replica owned the model's client: closed when it stopped.
    assert client.is_closed()
    assert registered.kind == resources_pb2.SERVICE_KIND_AGENT
    assert registered.description == "Adds numbers and knows the secret fact."
    assert result["response"] == "2 + 3 = 5, and a baby llama is a cria."
    first, second = model.requests
    # The model of `models:`: its name at the endpoint, the key from the environment.
    assert first.body["model"] == "scripted-1"
    headers = {name.lower(): value for name, value in first.headers.items()}
    assert headers["authorization"] == "Bearer sk-from-the-environment"
    assert first.messages[0] == {"role": "system", "content": "You answer in one sentence."}
    # Its own tool and every tool of the tool service the file names.
    offered = {t["function"]["name"] for t in first.body["tools"]}
    assert {"add", "get_the_secret_fact", "divide"} <= offered
    # Both results reached the model: the local call and the child task's.
    tool_results = [m["content"] for m in second.messages if m["role"] == "tool"]
    assert tool_results == ["5", SECRET_FACT]


def test_function_calling_off_builds_a_react_agent(tmp_path: Path, model_url: str) -> None:
    text = deployment_text(model_url).replace(
        "    max_retries: 0\n", "    max_retries: 0\n    function_calling: false\n"
    )
    d = parse_deployment(text, tmp_path / "deployment.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SCRIPTED_MODEL_KEY", "x")
        runner = build_service(d, "helper")
    assert isinstance(runner, AgentRunner)
    agent = runner.agent
    assert isinstance(agent, ReActAgent)
    assert agent.name == "helper"
    assert [t.metadata.name for t in agent.tools or [] if isinstance(t, BaseTool)] == ["add"]


def test_an_agent_needs_a_model_of_the_file_or_a_source(tmp_path: Path) -> None:
    text = deployment_text("http://127.0.0.1:9/v1")
    found = problems(text.replace("model: local/scripted", "model: local/other"), tmp_path)
    assert found == [
        "services.helper.model (line 11): no model 'local/other' in `models:`; "
        "models: ['local/scripted']"
    ]
    found = problems(text.replace("    model: local/scripted\n", ""), tmp_path)
    assert found == [
        "services.helper.kind (line 10): an agent needs a `source` (module:attribute of a "
        "llama-index agent) or a `model` (an id of `models:`) to be built from"
    ]


def test_agent_fields_belong_to_an_agent_built_from_a_model(tmp_path: Path) -> None:
    text = deployment_text("http://127.0.0.1:9/v1").replace(
        "    kind: agent\n    model: local/scripted\n",
        "    source: mesh_workflows:EchoWorkflow\n",
    )
    assert problems(text, tmp_path) == [
        "services.helper.tools (line 14): only a tool service, or an agent built from a "
        "`model`, has tools: add `kind: tools`, or `kind: agent` and `model` in place of "
        "`source`",
        "services.helper.system_prompt (line 12): only an agent built from a `model` has "
        "`system_prompt`: add `kind: agent` and `model`, with no `source`",
        "services.helper.mesh_tools (line 15): only an agent built from a `model` has "
        "`mesh_tools`: add `kind: agent` and `model`, with no `source`",
    ]


def test_a_missing_key_is_named_before_anything_starts(tmp_path: Path) -> None:
    text = deployment_text("http://127.0.0.1:9/v1")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SCRIPTED_MODEL_KEY", raising=False)
        found = problems(text, tmp_path)
    # The agent of the file, and the built-in agent service `up` runs on the models.
    assert [p.split(" raised")[0] for p in found] == [
        "services.helper.model (line 11): building service 'helper'",
        "models (line 2): building service 'agents'",
    ]
    assert all("SCRIPTED_MODEL_KEY that holds its API key is not set" in p for p in found)


def _free_port() -> int:
    # deploy_core takes a fixed port, as llama_deploy's did; ask the OS for a free one.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_deploy_agent_serves_an_agent_and_refuses_a_plain_workflow(
    tmp_path: Path, model: ScriptedModel, model_url: str
) -> None:
    control_plane = ControlPlaneConfig(port=_free_port())
    queue = NatsQueueConfig(data_dir=tmp_path / "nats", port=-1)
    config = ModelConfig(base_url=model_url, max_retries=0)
    http = model_client("scripted", config)  # the test's to close (below)
    llm = build_llm("scripted", config, async_openai_client=http)
    agent = FunctionAgent(tools=[], llm=llm, system_prompt="Be brief.")
    model.script("Hello from the mesh.", "Hello again.")
    core_ready, agent_ready = asyncio.Event(), asyncio.Event()
    async with http, asyncio.TaskGroup() as group:
        core = group.create_task(deploy_core(control_plane, queue, ready=core_ready))
        await core_ready.wait()
        served = group.create_task(
            deploy_agent(agent, WorkflowServiceConfig("greeter"), control_plane, ready=agent_ready)
        )
        await agent_ready.wait()
        try:
            async with AsyncClient(control_plane.url) as client:
                session = await client.create_session()
                first = await session.run("greeter", user_msg="Hi")
                await session.run("greeter", user_msg="Hi again")
                service = await client.get_service("greeter")
        finally:
            for task in [served, core]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert first["response"] == "Hello from the mesh."
    assert service.kind == resources_pb2.SERVICE_KIND_AGENT
    # The second run of the session carried the first exchange.
    assert model.requests[1].texts() == ["Be brief.", "Hi", "Hello from the mesh.", "Hi again"]
    with pytest.raises(TypeError, match="EchoWorkflow is neither"):
        await deploy_agent(EchoWorkflow(), WorkflowServiceConfig("echo"))  # type: ignore[arg-type]
