"""An agent served by the mesh: real FunctionAgents, real HTTP to the scripted model, a
real nats-server and control plane. Tool calls and deltas on the task's stream, token
usage on the task and the session, budgets, and the conversation kept in the session
from one run to the next, on any replica."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2
from mesh_agents import SYSTEM_PROMPT, assistant

from llama_mesh.client import StreamedEvent
from llama_mesh.config import ServiceConfig
from llama_mesh.core import agent_events as ae
from llama_mesh.core.errors import (
    InvalidArgumentError,
    TaskResourceExhaustedError,
    TokenBudgetExceededError,
)
from llama_mesh.core.names import TaskName
from llama_mesh.core.proto_time import duration
from llama_mesh.core.status import error_type, status_code
from llama_mesh.jetstream.journal import task_key
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.testing import Pause, Reply, ScriptedModel, ToolCall, Usage
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.token_ledger import TokenLedger

from kv_markers import expired


async def test_tool_calls_and_results_show_on_the_stream(
    nats: EmbeddedNats, model: ScriptedModel, model_url: str
) -> None:
    model.script(
        Reply(tool_calls=[ToolCall("add", {"a": 2, "b": 3})], usage=Usage(30, 6)),
        Reply("2 + 3 = 5", usage=Usage(45, 4)),
    )
    async with LocalMesh({"assistant": assistant(model_url)}, nats_url=nats.url) as mesh:
        service = await mesh.client.get_service("assistant")
        session = await mesh.client.create_session()
        handle = await session.create_task("assistant", user_msg="what is 2 + 3?")
        events = [e async for e in handle.events()]
        task = await handle.wait()

    assert service.kind == resources_pb2.SERVICE_KIND_AGENT
    assert service.description == "Adds numbers when asked."
    typed = [(e, e.agent_event) for e in events]
    started = [p for _, p in typed if isinstance(p, ae.ToolCallStarted)]
    completed = [p for _, p in typed if isinstance(p, ae.ToolCallCompleted)]
    assert [(p.tool_name, p.arguments) for p in started] == [("add", {"a": 2, "b": 3})]
    assert [(p.tool_name, p.output, p.is_error) for p in completed] == [("add", "5", False)]
    assert started[0].call_id == completed[0].call_id == "call_1"
    # Every event before the last is of the vocabulary, in step order.
    assert [e.type.removeprefix(ae.PREFIX) for e in events[:-1]] == [
        "InferenceStarted",
        "InferenceCompleted",
        "ToolExecutionStarted",
        "ToolCallStarted",
        "ToolCallCompleted",
        "ToolExecutionCompleted",
        "InferenceStarted",
        *["TextDelta"] * 5,  # "2 ", "+ ", "3 ", "= ", "5"
        "InferenceCompleted",
    ]
    assert events[-1].type == "StopEvent" and events[-1].state == "SUCCEEDED"
    result = ae.AgentResult.model_validate(events[-1].payload)
    assert result.response == "2 + 3 = 5"
    assert [(c.tool_name, c.output) for c in result.tool_calls] == [("add", "5")]
    # The model saw the tool's result in the second request.
    assert model.requests[1].messages[-1] == {
        "role": "tool",
        "content": "5",
        "tool_call_id": "call_1",
    }
    # Token usage: on each inference step's event, and summed on the task.
    step_usage = [e.usage for e in events if e.type == ae.InferenceCompleted.TYPE]
    assert [(u or {}).get("total_tokens") for u in step_usage] == [36, 49]
    assert (task.usage.prompt_tokens, task.usage.completion_tokens) == (75, 10)
    assert (task.usage.total_tokens, task.usage.llm_calls) == (85, 2)
    assert task.usage.models["scripted"].total_tokens == 85


async def test_deltas_reach_the_client_before_the_run_ends_in_order_without_gaps(
    nats: EmbeddedNats, model: ScriptedModel, model_url: str
) -> None:
    pause = Pause()
    first = [f"w{i} " for i in range(8)]
    rest = [f"x{i} " for i in range(8)]
    model.script(Reply(chunks=[*first, pause, *rest]))
    async with LocalMesh({"assistant": assistant(model_url)}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task("assistant", user_msg="talk")
        received: list[StreamedEvent] = []
        async for event in handle.events():
            received.append(event)
            deltas = [e for e in received if e.type == ae.TextDelta.TYPE]
            if event.type == ae.TextDelta.TYPE and len(deltas) == len(first):
                # The model holds the rest of its answer: the run has not finished, and
                # every delta it sent so far is here.
                assert (await handle.get()).state == resources_pb2.TASK_STATE_RUNNING
                assert not any(e.type == ae.InferenceCompleted.TYPE for e in received)
                pause.release()
    texts = [
        ae.TextDelta.model_validate(e.payload) for e in received if e.type == ae.TextDelta.TYPE
    ]
    assert [d.index for d in texts] == list(range(len(first) + len(rest)))
    assert [d.text for d in texts] == first + rest
    sequences = [e.sequence for e in received]
    assert sequences == sorted(set(sequences))
    assert received[-1].payload["response"] == "".join(first + rest)


async def test_three_runs_in_one_session_carry_the_conversation(
    nats: EmbeddedNats, model: ScriptedModel, model_url: str
) -> None:
    model.script("one", "two", "three")
    async with LocalMesh({"assistant": assistant(model_url)}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        for message in ("first", "second", "third"):
            await session.run("assistant", user_msg=message)
        other = await mesh.client.create_session()
        model.script("fresh")
        await other.run("assistant", user_msg="alone")
    assert [(m["role"], m["content"]) for m in model.requests[2].messages] == [
        ("system", SYSTEM_PROMPT),
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
        ("assistant", "two"),
        ("user", "third"),
    ]
    # Another session starts its own conversation.
    assert model.requests[3].texts() == [SYSTEM_PROMPT, "alone"]


async def test_the_conversation_follows_the_session_across_replicas(
    nats: EmbeddedNats, model: ScriptedModel, model_url: str
) -> None:
    model.script("one", "two", "three")
    async with LocalMesh(nats_url=nats.url) as mesh:
        a = await mesh.add_service(assistant(model_url), ServiceConfig("assistant"))
        session = await mesh.client.create_session()
        first = await session.create_task("assistant", user_msg="first")
        await first.result()
        # Each run on another replica (the others paused: they take nothing).
        a.pause()
        b = await mesh.add_service(assistant(model_url), ServiceConfig("assistant"))
        second = await session.create_task("assistant", user_msg="second")
        await second.result()
        b.pause()
        await a.resume()
        third = await session.create_task("assistant", user_msg="third")
        await third.result()
        replicas = [(await t.get()).replica_id for t in (first, second, third)]
    assert replicas == [a.replica_id, b.replica_id, a.replica_id]
    assert model.requests[2].texts()[1:] == ["first", "one", "second", "two", "third"]


async def test_usage_is_charged_to_the_session_and_its_budget_enforced(
    nats: EmbeddedNats, model: ScriptedModel, model_url: str
) -> None:
    model.script(Reply("a", usage=Usage(20, 10)), Reply("b", usage=Usage(25, 10)))
    async with LocalMesh({"assistant": assistant(model_url)}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session(token_budget=50)
        assert session.session.token_budget == 50
        await session.run("assistant", user_msg="first")  # 30 of 50
        with pytest.raises(TaskResourceExhaustedError) as crossed:
            await session.run("assistant", user_msg="second")  # 65 of 50: crosses it
        with pytest.raises(TaskResourceExhaustedError) as exhausted:
            await session.run("assistant", user_msg="third")  # none left: never runs
        after = await mesh.client.get_session(session.id)
        unlimited = await mesh.client.create_session()
        model.script(Reply("c", usage=Usage(1000, 1000)))
        await unlimited.run("assistant", user_msg="anything")

    task = crossed.value.task
    assert status_code(task.error) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_type(task.error) == "TokenBudgetExceededError"
    assert "has used 65 tokens (35 of them by this task) of its budget of 50" in str(crossed.value)
    assert task.usage.total_tokens == 35  # what it used is still recorded
    assert "has used 65 tokens of its budget of 50" in str(exhausted.value)
    assert exhausted.value.task.usage.total_tokens == 0
    assert len(model.requests) == 3  # the third run never reached the model
    assert (after.session.usage.total_tokens, after.session.usage.llm_calls) == (65, 2)
    assert after.session.usage.models["scripted"].prompt_tokens == 45


@pytest.mark.timeout(60)
async def test_the_usage_of_a_session_expires_with_it(
    nats: EmbeddedNats, model: ScriptedModel, model_url: str
) -> None:
    model.script(Reply("a", usage=Usage(20, 10)))
    async with LocalMesh({"assistant": assistant(model_url)}, nats_url=nats.url) as mesh:
        created = await mesh.client.call(
            mesh.client.stub.CreateSession,
            cp.CreateSessionRequest(session=resources_pb2.Session(ttl=duration(4))),
        )
        session = await mesh.client.get_session(created.session.name)
        await session.run("assistant", user_msg="first")
        usage = mesh.control_plane.state.usage  # type: ignore[union-attr]
        assert (await usage.get(session.id, session.name)).total_tokens == 30
        # Idle for its TTL: the session goes, and the count of its tokens with it
        # (before, the count stayed for good).
        await expired(nats.url, "mesh_sessions", session.id)
        await expired(nats.url, "mesh_usage", session.id)
        assert await usage.find(session.id) is None


async def test_bad_input_is_refused(nats: EmbeddedNats, model_url: str) -> None:
    async with LocalMesh({"assistant": assistant(model_url)}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with pytest.raises(InvalidArgumentError, match="message"):
            await session.create_task("assistant", message="hi")  # not a field of its input
        with pytest.raises(InvalidArgumentError, match="token_budget"):
            await mesh.client.create_session(token_budget=-1)
        # Refused as it is created (its replica failed it after it was queued).
        with pytest.raises(InvalidArgumentError, match="lacks 'user_msg' or 'chat_history'"):
            await session.create_task("assistant")
        assert await session.list_tasks() == []


async def test_an_agent_from_the_runtime_describes_itself(
    nats: EmbeddedNats, model_url: str
) -> None:
    async with LocalMesh({"assistant": assistant(model_url)}, nats_url=nats.url) as mesh:
        [runtime] = mesh.services["assistant"]
        described = runtime.describe()
    assert described.kind == resources_pb2.SERVICE_KIND_AGENT
    properties = described.input_schema["properties"]
    assert isinstance(properties, struct_pb2.Struct)
    assert set(properties.keys()) == {"user_msg", "chat_history", "max_iterations"}


async def test_tasks_of_one_session_charging_in_turn_count_every_token(
    nats: EmbeddedNats, model_url: str
) -> None:
    """Each ledger writes the session's count at the revision it saw last; another
    task's write in between makes it read the count again, not lose that write."""
    async with LocalMesh({"assistant": assistant(model_url)}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session(token_budget=100)
        state = mesh.control_plane.state  # type: ignore[union-attr]
        names = [TaskName(session.id, task_id) for task_id in ("one", "two")]
        ledgers = []
        for name in names:
            task = resources_pb2.Task(
                name=str(name), service="assistant", state=resources_pb2.TASK_STATE_RUNNING
            )
            assert await state.tasks.create(task_key(name), task) is not None
            ledgers.append(TokenLedger(state, name, "replica-1"))
        one, two = ledgers
        await one.check()
        await two.check()  # both read the count (none yet)

        def spent(total: int) -> resources_pb2.TaskEvent:
            usage = resources_pb2.TokenUsage(total_tokens=total, llm_calls=1)
            return resources_pb2.TaskEvent(type="llama_mesh.TokenUsage", usage=usage)

        await one.charge(spent(30))  # creates the count
        await two.charge(spent(35))  # its view is stale: read again, then 65
        await one.charge(spent(5))  # stale again: 70
        with pytest.raises(TokenBudgetExceededError, match="has used 110 tokens"):
            await two.charge(spent(40))
        counted = await state.usage.get(session.id, session.name)
        records = [(await state.tasks.get(task_key(name), str(name))).usage for name in names]
    assert (counted.total_tokens, counted.llm_calls) == (110, 4)
    assert [r.total_tokens for r in records] == [35, 75]
