"""Real llama-index agents, real HTTP to the scripted model: the llama-agents README
example through the agentic orchestrator, tools of a tool service in another process,
a human asked by an agent."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai_like import OpenAILike

from llama_mesh.client import AsyncClient, TaskHandle
from llama_mesh.config import ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.errors import TaskCancelledError
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.orchestrators import DECISION, AgenticOrchestrator
from llama_mesh.testing import RecordedRequest, Reply, ScriptedModel, ToolCall
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.mesh_tools import MeshTools
from llama_mesh.worker.runtime import ServiceRuntime
from llama_mesh_gateway import GatewayServer

from agent_services import SECRET_FACT, human
from processes import component

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "What is the secret fact?"


def llm(url: str, http: httpx.AsyncClient) -> OpenAILike:
    """An LLM on the scripted model whose HTTP connections the test owns (and closes)."""
    return OpenAILike(
        model="scripted",
        api_base=url,
        api_key="none",
        is_chat_model=True,
        is_function_calling_model=True,
        max_retries=0,
        timeout=60,
        async_http_client=http,
    )


def tool_names(request: RecordedRequest) -> set[str]:
    return {t["function"]["name"] for t in request.body.get("tools") or []}


def tool_messages(request: RecordedRequest) -> list[str]:
    return [m["content"] for m in request.messages if m["role"] == "tool"]


@pytest.fixture
def scripted() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
async def model_http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


@pytest.fixture
async def scripted_url(scripted: ScriptedModel) -> AsyncIterator[str]:
    async with scripted.serve() as url:
        yield url


def readme_model(request: RecordedRequest) -> Reply:
    """The model of the README example: the orchestrator routes the question to
    secret_fact_agent; that agent calls its tool; both answer with the fact."""
    last = request.messages[-1]
    if last["role"] == "tool":
        return Reply(SECRET_FACT if "Cria" in last["content"] else "I do not know.")
    if "secret_fact_agent" in tool_names(request):
        return Reply(tool_calls=[ToolCall("secret_fact_agent", {"user_msg": QUESTION})])
    if "get_the_secret_fact" in tool_names(request):
        return Reply(tool_calls=[ToolCall("get_the_secret_fact", {})])
    return Reply("Llamas hum.")


def get_the_secret_fact() -> str:
    """Returns the secret fact."""
    return SECRET_FACT


async def test_the_llama_agents_readme_example_through_the_agentic_orchestrator(
    nats: EmbeddedNats, scripted: ScriptedModel, scripted_url: str, model_http: httpx.AsyncClient
) -> None:
    scripted.respond_with(readme_model)
    agent1 = FunctionAgent(
        tools=[FunctionTool.from_defaults(fn=get_the_secret_fact)],
        llm=llm(scripted_url, model_http),
    )
    agent2 = FunctionAgent(tools=[], llm=llm(scripted_url, model_http))
    services = {
        "secret_fact_agent": (
            agent1,
            ServiceConfig("secret_fact_agent", description="Useful for getting the secret fact."),
        ),
        "dumb_fact_agent": (
            agent2,
            ServiceConfig("dumb_fact_agent", description="Useful for getting random dumb facts."),
        ),
    }
    orchestrator = AgenticOrchestrator(llm=llm(scripted_url, model_http))
    async with LocalMesh(services, nats_url=nats.url, orchestrator=orchestrator) as mesh:
        assert await mesh.client.run(QUESTION) == SECRET_FACT

        [routed] = await mesh.client.list_tasks(service="orchestrator")
        [hop] = [t for t in await mesh.client.list_tasks() if t.parent_task == routed.name]
        assert hop.service == "secret_fact_agent"
        events = [e async for e in mesh.client.task(routed.name).events()]
        decisions = [e.payload for e in events if e.type == DECISION]
        assert decisions[0]["hops"][0]["service"] == "secret_fact_agent"
        assert decisions[-1]["finish"] is True

    route, ask_agent, agent_with_fact, answer = scripted.requests
    # The orchestrator's model saw every agent, by its description, and the question.
    offered = {t["function"]["name"]: t["function"] for t in route.body["tools"]}
    assert offered["secret_fact_agent"]["description"] == "Useful for getting the secret fact."
    assert offered["dumb_fact_agent"]["description"] == "Useful for getting random dumb facts."
    assert route.messages[-1] == {"role": "user", "content": QUESTION}
    # secret_fact_agent called its tool, and the tool's text reached its model.
    assert tool_names(ask_agent) == {"get_the_secret_fact"}
    assert ask_agent.texts()[-1] == QUESTION
    assert tool_messages(agent_with_fact) == [SECRET_FACT]
    # The agent's answer went back to the orchestrator's model.
    assert SECRET_FACT in tool_messages(answer)[0]


@pytest.mark.timeout(300)  # a whole mesh in one new process: slow to start on a busy machine
async def test_the_readme_example_file_runs_against_an_openai_compatible_endpoint(
    scripted: ScriptedModel, scripted_url: str
) -> None:
    import asyncio

    scripted.respond_with(readme_model)
    env = {**os.environ, "OPENAI_BASE_URL": scripted_url, "LLAMA_MESH_MODEL": "scripted"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "agents" / "secret_fact.py"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(240):  # a hang guard only
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert out.decode() == f"Result: {SECRET_FACT}\n"
    assert len(scripted.requests) == 4


@pytest.mark.timeout(300)  # a whole mesh in one new process: slow to start on a busy machine
async def test_the_readme_example_file_without_a_model_server_fails_naming_the_endpoint() -> None:
    """What a reader sees who runs it before starting Ollama: the model's endpoint and
    the question to ask, after the retries of a deployment's `models:` entry (OpenAILike's
    own took ~37 s and ended in "Connection error.")."""
    import asyncio
    import socket

    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "examples" / "agents" / "secret_fact.py"),
            env={**os.environ, "OPENAI_BASE_URL": url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(240):  # a hang guard only
            out, err = await process.communicate()
    assert (process.returncode, out) == (1, b"")
    failed = [line for line in err.decode().splitlines() if "TaskFailedError" in line]
    assert failed[-1].endswith(
        f"failed: APIConnectionError: cannot connect to the model at {url}/ "
        "(All connection attempts failed): is its server running?"
    )


def tools_model(calls: list[ToolCall], final: str = "Done.") -> Any:
    """A model that asks for `calls` (in one reply), then answers `final`."""

    def respond(request: RecordedRequest) -> Reply:
        if request.messages[-1]["role"] == "tool":
            return Reply(final)
        return Reply(tool_calls=calls)

    return respond


@contextlib.asynccontextmanager
async def agent_with_remote_tools(
    nats: EmbeddedNats, url: str, services: tuple[str, ...] = ("secret_tools",)
) -> AsyncIterator[AsyncClient]:
    """The tool service in a process of its own; the agent, using it through MeshTools,
    in this one."""
    async with httpx.AsyncClient() as http, ControlPlaneServer.start([nats.url]) as cp:
        agent = FunctionAgent(name="agent", tool_retriever=MeshTools(*services), llm=llm(url, http))
        tools = ("serve", "service", "agent_services:secret_tools", "--name", "secret_tools")
        async with (
            component(*tools, "--control-plane", cp.address),
            ServiceRuntime.start(agent, ServiceConfig("agent"), cp.address),
            AsyncClient(cp.address) as client,
        ):
            yield client


async def children(client: AsyncClient, parent: TaskHandle) -> list[resources_pb2.Task]:
    return [t for t in await client.list_tasks() if t.parent_task == parent.name]


@pytest.mark.timeout(300)  # replicas in subprocesses start slowly on a busy machine
async def test_a_tool_call_is_a_child_task_whose_result_reaches_the_model(
    nats: EmbeddedNats, scripted: ScriptedModel, scripted_url: str
) -> None:
    scripted.respond_with(tools_model([ToolCall("get_the_secret_fact", {})], "It is a cria."))
    async with agent_with_remote_tools(nats, scripted_url) as client:
        session = await client.create_session()
        run = await session.create_task("agent", user_msg=QUESTION)
        await run.result()
        [child] = await children(client, run)
        assert child.service == "secret_tools"
        assert json_format.MessageToDict(child.input) == {
            "tool": "get_the_secret_fact",
            "arguments": {},
        }
        announced = [
            e.payload async for e in run.events() if e.type == "llama_mesh.ChildTaskCreated"
        ]
        assert announced == [
            {"tool": "get_the_secret_fact", "task": child.name, "service": "secret_tools"}
        ]
    first, second = scripted.requests
    # The model was offered the remote tool with its remote schema...
    offered = {t["function"]["name"]: t["function"] for t in first.body["tools"]}
    assert set(offered) == {"get_the_secret_fact", "add", "lookup", "divide", "rendezvous", "hang"}
    assert offered["get_the_secret_fact"]["description"].startswith("get_the_secret_fact()")
    # The remote schema, as llama-index's OpenAI class sends any tool's.
    parameters = offered["add"]["parameters"]
    assert parameters["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert parameters["required"] == ["a", "b"]
    # ...and got its result.
    assert tool_messages(second) == [SECRET_FACT]


@pytest.mark.timeout(300)  # replicas in subprocesses start slowly on a busy machine
async def test_a_tool_that_raises_gives_the_model_a_typed_error_and_the_run_completes(
    nats: EmbeddedNats, scripted: ScriptedModel, scripted_url: str
) -> None:
    scripted.respond_with(tools_model([ToolCall("divide", {"a": 1, "b": 0})], "Cannot."))
    async with agent_with_remote_tools(nats, scripted_url) as client:
        session = await client.create_session()
        run = await session.create_task("agent", user_msg="What is 1/0?")
        assert "Cannot." in json.dumps(await run.result())
        [child] = await children(client, run)
        assert child.state == resources_pb2.TASK_STATE_FAILED
    assert tool_messages(scripted.requests[1]) == [
        "Error: tool 'divide' failed: ZeroDivisionError: cannot divide by zero"
    ]


@pytest.mark.timeout(300)  # replicas in subprocesses start slowly on a busy machine
async def test_parallel_tool_calls_run_concurrently_as_children(
    nats: EmbeddedNats, scripted: ScriptedModel, scripted_url: str
) -> None:
    # Each rendezvous returns only once the other has started: both in one reply.
    calls = [
        ToolCall("rendezvous", {"name": "a"}, id="call_a"),
        ToolCall("rendezvous", {"name": "b"}, id="call_b"),
    ]
    scripted.respond_with(tools_model(calls))
    async with agent_with_remote_tools(nats, scripted_url) as client:
        session = await client.create_session()
        run = await session.create_task("agent", user_msg="Meet.")
        await run.result()
        assert len(await children(client, run)) == 2
    assert sorted(tool_messages(scripted.requests[1])) == ["a met", "b met"]


@pytest.mark.timeout(300)  # replicas in subprocesses start slowly on a busy machine
async def test_cancelling_the_agent_cancels_its_running_tool_call(
    nats: EmbeddedNats, scripted: ScriptedModel, scripted_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "cancelled"
    scripted.respond_with(tools_model([ToolCall("hang", {"marker": str(marker)})]))
    async with agent_with_remote_tools(nats, scripted_url) as client:
        session = await client.create_session()
        run = await session.create_task("agent", user_msg="Wait forever.")
        async for event in run.events():
            if event.type == "llama_mesh.ChildTaskCreated":
                tool_call = client.task(event.payload["task"])
                break
        async for event in tool_call.events():
            if event.type == "Hanging":
                break  # the tool runs, in the tool service's process
        assert await run.cancel("stop")
        with pytest.raises(TaskCancelledError):
            await run.result()
        with pytest.raises(TaskCancelledError, match="parent task cancelled"):
            await tool_call.result()
        assert marker.read_text() == "cancelled"


def asks_a_human(request: RecordedRequest) -> Reply:
    last = request.messages[-1]
    if last["role"] == "tool":
        return Reply(f"The human says: {last['content']}")
    return Reply(tool_calls=[ToolCall("human", {"question": QUESTION})])


async def until_the_human_is_asked(client: AsyncClient, run: TaskHandle) -> TaskHandle:
    async for event in run.events():
        if event.type == "llama_mesh.ChildTaskCreated":
            question = client.task(event.payload["task"])
            async for child_event in question.events():
                if child_event.state == "WAITING_FOR_INPUT":
                    return question
    raise AssertionError(f"{run.name} ended without asking")


async def answer_over_rest(address: str, task: str, text: str) -> None:
    import httpx

    async with (
        GatewayServer(address, port=0) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        resp = await http.post(
            f"/v1/{task}:sendEvent",
            json={"type": "HumanResponseEvent", "payload": {"response": text}},
        )
        assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("restart_control_plane", [False, True])
async def test_an_agent_asks_a_human_and_waits_for_the_answer_over_rest(
    nats: EmbeddedNats,
    scripted: ScriptedModel,
    scripted_url: str,
    model_http: httpx.AsyncClient,
    restart_control_plane: bool,
) -> None:
    scripted.respond_with(asks_a_human)
    agent = FunctionAgent(
        name="asker", tool_retriever=MeshTools("human"), llm=llm(scripted_url, model_http)
    )
    first = contextlib.AsyncExitStack()
    cp = await first.enter_async_context(ControlPlaneServer.start([nats.url]))
    port = int(cp.address.rpartition(":")[2])
    try:
        async with (
            ServiceRuntime.start(human, ServiceConfig("human"), cp.address),
            ServiceRuntime.start(agent, ServiceConfig("asker"), cp.address),
            AsyncClient(cp.address) as client,
        ):
            session = await client.create_session()
            run = await session.create_task("asker", user_msg=QUESTION)
            question = await until_the_human_is_asked(client, run)
            [waiting] = await client.inbox()
            assert waiting.name == question.name
            assert waiting.parent_task == run.name
            assert (await run.get()).state == resources_pb2.TASK_STATE_RUNNING
            if restart_control_plane:
                await first.aclose()  # while the run waits for the person
                cp = await first.enter_async_context(
                    ControlPlaneServer.start([nats.url], port=port)
                )
            await answer_over_rest(cp.address, question.name, "A cria.")
            result = await run.result()
            assert "The human says: A cria." in json.dumps(result)
    finally:
        await first.aclose()
    assert tool_messages(scripted.requests[-1]) == ["A cria."]
    assert len(scripted.requests) == 2  # asked once, answered once
