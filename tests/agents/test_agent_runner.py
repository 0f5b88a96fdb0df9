"""The agent runner, in-process: a real FunctionAgent on the scripted model, its events
in the agent vocabulary, its result, and its memory through a JSON round trip."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from typing import Any

import pytest
import workflows.utils
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.llms.openai import OpenAI
from mesh_agents import scripted_llm
from workflows.handler import WorkflowHandler

from llama_mesh.config import ModelConfig, ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core import agent_events as ae
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.json_values import to_python
from llama_mesh.core.names import AGENTS_SERVICE
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.testing import Reply, ScriptedModel, ToolCall, Usage
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.agent_runner import AgentRunner
from llama_mesh.worker.configured_agent import ConfiguredAgentRunner
from llama_mesh.worker.runtime import ServiceRuntime
from llama_mesh.worker.workflow_runner import ContextTypeNotAllowedError, RunOutcome


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"exploded: {reason}")


async def _run(
    runner: AgentRunner, saved: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[RunOutcome, list[resources_pb2.TaskEvent]]:
    events: list[resources_pb2.TaskEvent] = []

    async def on_event(event: resources_pb2.TaskEvent, handler: WorkflowHandler) -> None:
        events.append(event)

    outcome = await runner.run(kwargs, saved, on_event)
    # What the runtime stores is JSON: go through it as the session does.
    outcome.context = json.loads(json.dumps(outcome.context))
    return outcome, events


def _types(events: list[resources_pb2.TaskEvent]) -> list[str]:
    return [e.type.removeprefix(ae.PREFIX) for e in events]


async def test_steps_deltas_tool_calls_and_usage(model: ScriptedModel, model_url: str) -> None:
    model.script(
        Reply(
            tool_calls=[ToolCall("add", {"a": 1, "b": 2}), ToolCall("explode", {"reason": "x"})],
            usage=Usage(20, 5),
        ),
        Reply(chunks=["The sum ", "is ", "3."], usage=Usage(40, 3)),
    )
    llm = scripted_llm(model_url)
    agent = FunctionAgent(tools=[add, explode], llm=llm, system_prompt="be brief")
    outcome, events = await _run(AgentRunner(agent), user_msg="add 1 and 2")

    types = _types(events)
    # The two calls may interleave; each starts before it completes.
    calls = [
        (t, to_python(e.payload)["call_id"]) for t, e in zip(types[3:7], events[3:7], strict=True)
    ]
    for call_id in ("call_1", "call_2"):
        assert [t for t, c in calls if c == call_id] == ["ToolCallStarted", "ToolCallCompleted"]
    assert types[:3] + types[7:] == [
        "InferenceStarted",
        "InferenceCompleted",
        "ToolExecutionStarted",
        "ToolExecutionCompleted",
        "InferenceStarted",
        "TextDelta",
        "TextDelta",
        "TextDelta",
        "InferenceCompleted",
    ]
    # Every payload is what the vocabulary documents.
    parsed = [ae.parse(e.type, to_python(e.payload)) for e in events]
    assert all(p is not None for p in parsed)
    first, tools, second = parsed[1], parsed[7], parsed[12]
    assert isinstance(first, ae.InferenceCompleted) and first.stop_reason == "tool_calls"
    assert [(c.tool_name, c.arguments) for c in first.message.tool_calls] == [
        ("add", {"a": 1, "b": 2}),
        ("explode", {"reason": "x"}),
    ]
    assert isinstance(tools, ae.ToolExecutionCompleted)
    assert tools.step_id == "step-2"
    assert [(r.tool_name, r.output, r.is_error) for r in tools.tool_responses] == [
        ("add", "3", False),
        ("explode", "exploded: x", True),
    ]
    deltas = [p for p in parsed if isinstance(p, ae.TextDelta)]
    assert [(d.step_id, d.index, d.text) for d in deltas] == [
        ("step-3", 0, "The sum "),
        ("step-3", 1, "is "),
        ("step-3", 2, "3."),
    ]
    assert isinstance(second, ae.InferenceCompleted)
    assert (second.message.content, second.stop_reason) == ("The sum is 3.", "stop")
    # Each inference step carries its call's tokens, asked for on the stream.
    counts = [(e.usage.prompt_tokens, e.usage.completion_tokens) for e in (events[1], events[12])]
    assert counts == [(20, 5), (40, 3)]
    assert events[12].usage.models["scripted"].llm_calls == 1
    assert all(r.body["stream_options"] == {"include_usage": True} for r in model.requests)
    # The model saw the tool results (the failing one as its error text).
    tool_messages = [m for m in model.requests[1].messages if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["3", "exploded: x"]

    result = ae.AgentResult.model_validate(outcome.result)
    assert result.response == "The sum is 3."
    assert result.agent == "Agent"
    assert [(c.tool_name, c.output, c.is_error) for c in result.tool_calls] == [
        ("add", "3", False),
        ("explode", "exploded: x", True),
    ]


async def test_memory_survives_the_json_round_trip(model: ScriptedModel, model_url: str) -> None:
    model.script("one", "two", "three")
    runner = AgentRunner(FunctionAgent(llm=scripted_llm(model_url), system_prompt="sys"))
    saved = None
    for message in ("first", "second", "third"):
        outcome, _ = await _run(runner, saved, user_msg=message)
        saved = outcome.context
    # A fresh runner (another replica) continues the conversation.
    model.script("four")
    other = AgentRunner(FunctionAgent(llm=scripted_llm(model_url), system_prompt="sys"))
    await _run(other, saved, user_msg="fourth")
    third, fourth = model.requests[2], model.requests[3]
    assert [(m["role"], m["content"]) for m in third.messages] == [
        ("system", "sys"),
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
        ("assistant", "two"),
        ("user", "third"),
    ]
    assert fourth.texts()[-3:] == ["third", "three", "fourth"]


async def test_chat_history_in_the_input_replaces_the_conversation(
    model: ScriptedModel, model_url: str
) -> None:
    model.script("a", "b")
    runner = AgentRunner(FunctionAgent(llm=scripted_llm(model_url)))
    first, _ = await _run(runner, user_msg="forgotten")
    history = [
        {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "earlier answer"},
    ]
    await _run(runner, first.context, user_msg="now", chat_history=history)
    assert model.requests[1].texts() == ["earlier question", "earlier answer", "now"]


async def test_a_type_named_in_the_saved_context_is_not_imported(
    model: ScriptedModel, model_url: str
) -> None:
    model.script("a")
    runner = AgentRunner(FunctionAgent(llm=scripted_llm(model_url)))
    outcome, _ = await _run(runner, user_msg="hi")
    data = outcome.context["workflow"]["state"]["state_data"]["_data"]
    data["state"] = json.dumps(
        {"__is_pydantic": True, "qualified_name": "email.mime.text.MIMEText", "value": {}}
    )
    with pytest.raises(ContextTypeNotAllowedError, match="MIMEText"):
        await _run(runner, outcome.context, user_msg="again")
    assert len(model.requests) == 1


async def test_bad_input_is_invalid_argument(model_url: str) -> None:
    runner = AgentRunner(FunctionAgent(llm=scripted_llm(model_url)))
    with pytest.raises(InvalidArgumentError, match="user_msg"):
        await _run(runner)
    with pytest.raises(InvalidArgumentError, match="chat_history"):
        await _run(runner, user_msg="x", chat_history=[{"role": "wizard", "content": "x"}])


async def test_a_react_agent_streams_its_text(model: ScriptedModel, model_url: str) -> None:
    model.script(Reply(chunks=["Thought: easy.\n", "Answer: ", "42"]))
    agent = ReActAgent(llm=scripted_llm(model_url))
    outcome, events = await _run(AgentRunner(agent), user_msg="meaning?")
    assert _types(events) == [
        "InferenceStarted",
        "TextDelta",
        "TextDelta",
        "TextDelta",
        "InferenceCompleted",
    ]
    completed = ae.InferenceCompleted.model_validate(to_python(events[-1].payload))
    # The step carries what the model said; the result, llama-index's answer.
    assert completed.message.content == "Thought: easy.\nAnswer: 42"
    assert outcome.result["response"] == "42"


async def test_a_configured_agent_looks_its_steps_up_once(
    model: ScriptedModel, model_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library walks the instance (inspect.getmembers) to find the steps each time it
    asks `_get_steps()`, for every step it runs; a ConfiguredAgent asks it once."""
    found = workflows.utils.get_steps_from_instance
    lookups: Counter[int] = Counter()

    def counted(workflow: object) -> Any:
        lookups[id(workflow)] += 1
        return found(workflow)

    monkeypatch.setattr("workflows.workflow.get_steps_from_instance", counted)
    model.script(Reply(tool_calls=[ToolCall("lookup", {"q": "x"})]), "Done.")
    runner = ConfiguredAgentRunner({"scripted": ModelConfig(base_url=model_url, max_retries=0)})
    async with contextlib.aclosing(runner):
        lookups.clear()
        outcome, events = await _run(
            runner,
            agent_id="a",
            agent_config={"model": "scripted"},
            messages=[{"role": "user", "content": "hi"}],
        )
    assert outcome.result["response"] == "Done."
    assert len(events) > 5  # inference, a call of a tool it lacks (an error), inference
    assert list(lookups.values()) == [1]


async def test_a_replica_closes_its_runner_s_model_connections_when_it_stops(
    nats: EmbeddedNats, model: ScriptedModel, model_url: str
) -> None:
    """The replica owns its runner: what the built-in agent service's runner opened to
    the model (a kept-alive connection after a turn) is closed once the replica stops,
    not left to the garbage collector after the event loop is gone."""
    model.script("hello")
    runner = ConfiguredAgentRunner({"scripted": ModelConfig(base_url=model_url, max_retries=0)})
    llm = runner.llm("scripted", {})
    assert isinstance(llm, OpenAI)
    client = llm._get_aclient()
    async with (
        ControlPlaneServer.start([nats.url]) as cp,
        ServiceRuntime.start(runner, ServiceConfig(AGENTS_SERVICE), cp.address),
    ):
        outcome, _ = await _run(
            runner,
            agent_id="a",
            agent_config={"model": "scripted"},
            messages=[{"role": "user", "content": "hi"}],
        )
        assert outcome.result["response"] == "hello"
        assert not client.is_closed()
    assert client.is_closed()
