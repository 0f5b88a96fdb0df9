"""Tool services: tools published in the registry, called as tasks and, through the
meta-tool, as child tasks of the task that uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format

from llama_mesh.client import AsyncClient
from llama_mesh.config import ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.errors import TaskCancelledError, TaskFailedError
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.runtime import ServiceRuntime

from agent_services import SECRET_FACT, ToolCallerWorkflow, secret_tools
from processes import component

CANCELLED = resources_pb2.TASK_STATE_CANCELLED


async def test_registry_publishes_each_tool_with_its_schema(nats: EmbeddedNats) -> None:
    async with LocalMesh({"secret_tools": secret_tools}, nats_url=nats.url) as mesh:
        service = await mesh.client.get_service("secret_tools")
        assert service.kind == resources_pb2.SERVICE_KIND_TOOL
        assert service.description == "Tools about secrets, sums and cities."
        tools = {t.name: t for t in service.tools}
        assert list(tools) == [
            "get_the_secret_fact",
            "add",
            "lookup",
            "divide",
            "rendezvous",
            "hang",
        ]
        assert "Adds two integers." in tools["add"].description
        assert json_format.MessageToDict(tools["add"].parameters) == {
            "type": "object",
            "properties": {
                "a": {"title": "A", "type": "integer"},
                "b": {"title": "B", "type": "integer"},
            },
            "required": ["a", "b"],
        }


async def test_a_task_calls_one_tool_sync_or_async(nats: EmbeddedNats) -> None:
    async with LocalMesh({"secret_tools": secret_tools}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        assert await session.run("secret_tools", tool="get_the_secret_fact") == SECRET_FACT
        assert await session.run("secret_tools", tool="add", arguments={"a": 2, "b": 3}) == 5
        assert await session.run("secret_tools", tool="lookup", arguments={"city": "Lima"}) == {
            "city": "Lima",
            "population": 4000,
        }


async def test_tool_errors_are_typed(nats: EmbeddedNats) -> None:
    async with LocalMesh({"secret_tools": secret_tools}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with pytest.raises(TaskFailedError) as raised:
            await session.run("secret_tools", tool="divide", arguments={"a": 1, "b": 0})
        assert raised.value.error_type == "ZeroDivisionError"
        assert "cannot divide by zero" in raised.value.task.error.message
        with pytest.raises(TaskFailedError) as raised:
            await session.run("secret_tools", tool="nope")
        assert raised.value.error_type == "ToolNotFoundError"
        assert "'get_the_secret_fact'" in raised.value.task.error.message
        with pytest.raises(TaskFailedError) as raised:
            await session.run("secret_tools", tool="add", arguments={"a": "x"})
        assert raised.value.error_type == "InvalidToolArgumentsError"
        assert "b" in raised.value.task.error.message


async def test_meta_tool_call_is_a_child_task_on_the_parents_stream(nats: EmbeddedNats) -> None:
    services = {"secret_tools": secret_tools, "caller": ToolCallerWorkflow()}
    async with LocalMesh(services, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task(
            "caller", timeout=60, calls=[["add", {"a": 20, "b": 22}]]
        )
        assert await handle.result() == [{"content": "42", "is_error": False}]
        [child] = [t for t in await session.list_tasks() if t.parent_task == handle.name]
        assert child.service == "secret_tools"
        assert json_format.MessageToDict(child.input) == {
            "tool": "add",
            "arguments": {"a": 20, "b": 22},
        }
        parent = await handle.get()
        # The parent's deadline, as what remained of it when the child was created.
        assert child.HasField("deadline")
        gap = parent.deadline.ToMilliseconds() - child.deadline.ToMilliseconds()
        assert abs(gap) < 5_000
        announced = [
            e.payload async for e in handle.events() if e.type == "llama_mesh.ChildTaskCreated"
        ]
        assert announced == [{"tool": "add", "task": child.name, "service": "secret_tools"}]


async def test_a_tool_that_raises_gives_the_caller_a_typed_error_message(
    nats: EmbeddedNats,
) -> None:
    services = {"secret_tools": secret_tools, "caller": ToolCallerWorkflow()}
    async with LocalMesh(services, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        outputs = await session.run(
            "caller",
            calls=[["divide", {"a": 1, "b": 0}], ["add", {"a": 1, "b": 1}]],
        )
        assert outputs == [
            {
                "content": "Error: tool 'divide' failed: ZeroDivisionError: cannot divide by zero",
                "is_error": True,
            },
            {"content": "2", "is_error": False},
        ]


async def test_parallel_tool_calls_run_concurrently(nats: EmbeddedNats) -> None:
    # Each rendezvous call returns only once the other has started.
    services = {"secret_tools": secret_tools, "caller": ToolCallerWorkflow()}
    async with LocalMesh(services, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        outputs = await session.run(
            "caller",
            calls=[["rendezvous", {"name": "a"}], ["rendezvous", {"name": "b"}]],
        )
        assert [o["content"] for o in outputs] == ["a met", "b met"]


@pytest.mark.timeout(300)  # replicas in subprocesses start slowly on a busy machine
async def test_cancelling_the_caller_cancels_its_running_tool_call_in_another_process(
    nats: EmbeddedNats, tmp_path: Path
) -> None:
    marker = tmp_path / "cancelled"
    async with ControlPlaneServer.start([nats.url]) as cp:
        tools_args = ("serve", "service", "agent_services:secret_tools", "--name", "secret_tools")
        async with (
            component(*tools_args, "--control-plane", cp.address),
            ServiceRuntime.start(ToolCallerWorkflow(), ServiceConfig("caller"), cp.address),
            AsyncClient(cp.address) as client,
        ):
            session = await client.create_session()
            handle = await session.create_task("caller", calls=[["hang", {"marker": str(marker)}]])
            async for event in handle.events():
                if event.type.endswith("ChildTaskCreated"):
                    child = client.task(event.payload["task"])
                    break
            async for event in child.events():
                if event.type == "Hanging":
                    break  # the tool runs
            assert await handle.cancel("user stopped it")
            with pytest.raises(TaskCancelledError):
                await handle.result()
            with pytest.raises(TaskCancelledError, match="parent task cancelled"):
                await child.result()
            assert (await child.get()).state == CANCELLED
            assert marker.read_text() == "cancelled"


@pytest.mark.timeout(300)  # replicas in subprocesses start slowly on a busy machine
async def test_tool_service_in_another_process_serves_a_caller(nats: EmbeddedNats) -> None:
    async with ControlPlaneServer.start([nats.url]) as cp:
        tools_args = ("serve", "service", "agent_services:secret_tools", "--name", "secret_tools")
        async with (
            component(*tools_args, "--control-plane", cp.address),
            ServiceRuntime.start(ToolCallerWorkflow(), ServiceConfig("caller"), cp.address),
            AsyncClient(cp.address) as client,
        ):
            session = await client.create_session()
            outputs = await session.run("caller", calls=[["get_the_secret_fact", {}]])
            assert outputs == [{"content": SECRET_FACT, "is_error": False}]
