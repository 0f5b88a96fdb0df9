"""Human services: tasks a person answers, in the inbox, durable across restarts."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from workflows import Workflow

from llama_mesh.client import AsyncClient, TaskHandle
from llama_mesh.config import ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    TaskDeadlineExceededError,
)
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2
from llama_mesh_gateway import GatewayServer

from agent_services import ToolCallerWorkflow, human
from processes import component

WAITING = "WAITING_FOR_INPUT"
PROMPT = "Please answer this question:\n{}"


async def until_waiting(handle: TaskHandle) -> dict[str, Any]:
    """The payload of the event that made the task wait for input."""
    async for event in handle.events():
        if event.state == WAITING:
            payload: dict[str, Any] = event.payload
            return payload
    raise AssertionError(f"{handle.name} finished without waiting for input")


async def first_child(client: AsyncClient, parent: TaskHandle) -> TaskHandle:
    async for event in parent.events():
        if event.type == "llama_mesh.ChildTaskCreated":
            return client.task(event.payload["task"])
    raise AssertionError(f"{parent.name} finished without a child task")


async def answer_over_rest(address: str, task: str, text: str) -> dict[str, Any]:
    async with (
        GatewayServer(address, port=0) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        resp = await http.post(
            f"/v1/{task}:sendEvent",
            json={"type": "HumanResponseEvent", "payload": {"response": text}},
        )
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body


async def test_the_task_waits_with_its_prompt_in_the_inbox_and_the_answer_is_its_result(
    nats: EmbeddedNats,
) -> None:
    async with LocalMesh({"human": human}, nats_url=nats.url) as mesh:
        service = await mesh.client.get_service("human")
        assert service.kind == resources_pb2.SERVICE_KIND_HUMAN
        assert service.description == "Ask a human for facts no tool knows."
        one = await (await mesh.client.create_session()).create_task("human", question="2+2?")
        other = await (await mesh.client.create_session()).create_task(
            "human", question={"draft": "v1"}
        )
        assert await until_waiting(one) == {
            "prefix": PROMPT.format("2+2?"),
            "question": "2+2?",
        }
        await until_waiting(other)
        inbox = {t.name: t for t in await mesh.client.inbox()}
        assert set(inbox) == {one.name, other.name}  # across sessions
        shown = inbox[other.name].input_request
        assert shown.payload.struct_value["prefix"] == PROMPT.format('{"draft": "v1"}')
        assert list(service.accepted_event_types) == ["HumanResponseEvent"]
        with pytest.raises(InvalidArgumentError, match="does not accept"):
            await one.send_event("Nonsense", response="4")
        await one.send_event("HumanResponseEvent", response="4")
        assert await one.result() == "4"
        with pytest.raises(FailedPreconditionError, match="not waiting"):
            await one.send_event("HumanResponseEvent", response="5")
        assert [t.name for t in await mesh.client.inbox()] == [other.name]


async def test_an_unanswered_task_times_out_with_a_typed_failure_also_as_a_child(
    nats: EmbeddedNats,
) -> None:
    services: dict[str, Workflow | tuple[Workflow, ServiceConfig]] = {
        "human": (human, ServiceConfig("human", timeout=0.5)),
        "caller": ToolCallerWorkflow(),
    }
    async with LocalMesh(services, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        alone = await session.create_task("human", question="anyone?")
        with pytest.raises(TaskDeadlineExceededError):
            await alone.result()
        # The caller may take an hour; the person it asks still has half a second.
        outputs = await session.run(
            "caller", timeout=3600, services=["human"], calls=[["human", {"question": "hello?"}]]
        )
        [output] = outputs
        assert output["is_error"] is True
        assert output["content"].startswith("Error: tool 'human' failed: ")
        assert "deadline" in output["content"]


async def test_the_answer_arrives_over_rest(nats: EmbeddedNats) -> None:
    async with LocalMesh({"human": human}, nats_url=nats.url) as mesh:
        handle = await (await mesh.client.create_session()).create_task("human", question="name?")
        await until_waiting(handle)
        body = await answer_over_rest(mesh.address, handle.name, "Ada")
        assert body["task"]["state"] == "TASK_STATE_RUNNING"
        assert await handle.result() == "Ada"


@contextlib.asynccontextmanager
async def human_replica(cp: str) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    args = ("serve", "service", "agent_services:human", "--name", "human", "--ack-wait", "1")
    async with component(*args, "--control-plane", cp) as started:
        yield started


async def killed(process: Any) -> None:
    process.send_signal(signal.SIGKILL)
    await process.wait()


@pytest.mark.timeout(300)  # replicas in subprocesses start slowly on a busy machine
async def test_an_answer_sent_while_the_replica_is_down_is_not_lost(nats: EmbeddedNats) -> None:
    async with ControlPlaneServer.start([nats.url]) as cp, AsyncClient(cp.address) as client:
        session = await client.create_session()
        async with human_replica(cp.address) as (process, _):
            handle = await session.create_task("human", question="2+2?")
            await until_waiting(handle)
            await killed(process)
        # The record still says the task waits: the answer is taken and stored.
        await handle.send_event("HumanResponseEvent", response="4")
        async with human_replica(cp.address):
            assert await handle.result() == "4"
        task = await handle.get()
        assert task.attempt_count == 2
        # The second attempt found the answer: it did not ask (wait) again.
        states = [e.state async for e in handle.events()]
        assert states.count(WAITING) == 1


@pytest.mark.timeout(300)  # replicas in subprocesses start slowly on a busy machine
async def test_a_restarted_replica_asks_again_and_keeps_the_question_in_the_inbox(
    nats: EmbeddedNats,
) -> None:
    async with ControlPlaneServer.start([nats.url]) as cp, AsyncClient(cp.address) as client:
        session = await client.create_session()
        async with human_replica(cp.address) as (process, _):
            handle = await session.create_task("human", question="2+2?")
            await until_waiting(handle)
            await killed(process)
        assert [t.name for t in await client.inbox()] == [handle.name]
        async with human_replica(cp.address):
            # The new attempt asks the same question.
            async for event in handle.events():
                if event.state == WAITING and event.attempt == 2:
                    assert event.payload["prefix"] == PROMPT.format("2+2?")
                    break
            await handle.send_event("HumanResponseEvent", response="4")
            assert await handle.result() == "4"


@pytest.mark.timeout(300)  # replicas in subprocesses start slowly on a busy machine
async def test_a_question_from_another_task_survives_a_restart_of_every_process(
    tmp_path: Path,
) -> None:
    """A caller asks a human (a child task) and waits; NATS, the control plane and both
    replicas go down (the replicas killed); after the restart the person answers over
    REST and the caller completes with the answer, with the question asked once."""
    data = tmp_path / "nats"
    replicas = (
        ("agent_services:human", "human"),
        ("agent_services:ToolCallerWorkflow", "caller"),
    )

    def serve(cp: str, source: str, name: str) -> Any:
        args = ("serve", "service", source, "--name", name, "--ack-wait", "1")
        return component(*args, "--control-plane", cp)

    async with contextlib.AsyncExitStack() as first:
        nats = await first.enter_async_context(EmbeddedNats.start(data))
        cp = await first.enter_async_context(ControlPlaneServer.start([nats.url]))
        nats_port, cp_port = nats.port, int(cp.address.rpartition(":")[2])
        processes = [(await first.enter_async_context(serve(cp.address, *r)))[0] for r in replicas]
        async with AsyncClient(cp.address) as client:
            session = await client.create_session("asks")
            caller = await session.create_task(
                "caller", services=["human"], calls=[["human", {"question": "the secret?"}]]
            )
            question = await first_child(client, caller)
            await until_waiting(question)
        for process in processes:
            await killed(process)
    # Everything is down. Start it again where it was.
    async with contextlib.AsyncExitStack() as second:
        nats = await second.enter_async_context(EmbeddedNats.start(data, port=nats_port))
        cp = await second.enter_async_context(ControlPlaneServer.start([nats.url], port=cp_port))
        for r in replicas:
            await second.enter_async_context(serve(cp.address, *r))
        async with AsyncClient(cp.address) as client:
            await answer_over_rest(cp.address, question.name, "A baby llama is a cria.")
            outputs = await client.task(caller.name).result()
            assert outputs == [{"content": "A baby llama is a cria.", "is_error": False}]
            humans = await client.list_tasks("asks", service="human")
            assert [t.name for t in humans] == [question.name]  # asked once
