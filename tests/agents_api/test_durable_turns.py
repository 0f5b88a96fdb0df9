# mypy: disable-error-code="arg-type,list-item,union-attr,typeddict-item"
# mypy: disable-error-code="operator,misc,index,attr-defined"
# (the clients are called with plain JSON dicts and their union results read as the
# tests know them to be, as their users do; their TypedDicts and unions are not the point)
"""A turn that waits for a client tool survives a restart of the agent service's
replica (killed) and of the control plane before the caller resumes it; the model is
not asked again for what it answered before."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from llama_stack_client import AsyncLlamaStackClient

from llama_mesh.client import AsyncClient
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.testing import ScriptedModel
from llama_mesh_gateway import GatewayServer

from .test_turns import capitals
from processes import component

CONFIG: dict[str, Any] = {
    "model": "scripted",
    "instructions": "You are terse.",
    "client_tools": [
        {
            "name": "lookup_capital",
            "description": "Look up the capital of a country.",
            "parameters": [
                {"name": "country", "parameter_type": "string", "description": "", "required": True}
            ],
        }
    ],
}


@contextlib.asynccontextmanager
async def replica(cp: str) -> AsyncIterator[Any]:
    args = ("serve", "service", "agent_api_services:agents", "--name", "agents")
    # A short ack wait: the killed replica's task is delivered again soon.
    started = component(*args, "--ack-wait", "3", "--control-plane", cp, ready_timeout=90)
    async with started as (process, _):
        yield process


@contextlib.asynccontextmanager
async def llama(cp: str) -> AsyncIterator[AsyncLlamaStackClient]:
    async with (
        GatewayServer(cp, port=0) as gateway,
        httpx.AsyncClient(timeout=30) as http,
        AsyncLlamaStackClient(base_url=gateway.url, http_client=http, max_retries=0) as client,
    ):
        yield client


@pytest.mark.timeout(300)
async def test_a_waiting_turn_survives_restarts_of_the_replica_and_the_control_plane(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ScriptedModel()
    model.respond_with(capitals)
    async with model.serve() as model_url:
        monkeypatch.setenv("SCRIPTED_MODEL_URL", model_url)
        async with ControlPlaneServer.start([nats.url]) as cp, replica(cp.address) as process:
            cp_port = int(cp.address.rpartition(":")[2])
            async with llama(cp.address) as client:
                agent_id = (await client.agents.create(agent_config=CONFIG)).agent_id
                session_id = (
                    await client.agents.session.create(agent_id, session_name="s")
                ).session_id
                stream = await client.agents.turn.create(
                    agent_id=agent_id,
                    session_id=session_id,
                    messages=[{"role": "user", "content": "the capital of France?"}],
                    stream=True,
                )
                chunks = [c async for c in stream]
            assert chunks[-1].event.payload.event_type == "turn_awaiting_input"
            turn_id = chunks[-1].event.payload.turn.turn_id
            assert len(model.requests) == 1
            process.send_signal(signal.SIGKILL)
            await process.wait()
        # The replica is dead and the control plane gone. Start both again.
        async with (
            ControlPlaneServer.start([nats.url], port=cp_port) as cp,
            replica(cp.address),
            AsyncClient(cp.address) as mesh,
        ):
            task = mesh.task(f"sessions/{session_id}/tasks/{turn_id}")
            async for event in task.events():
                if event.state == "WAITING_FOR_INPUT" and event.attempt == 2:
                    break  # the new attempt waits for the same calls again
            async with llama(cp.address) as client:
                resumed = await client.agents.turn.resume(
                    turn_id,
                    agent_id=agent_id,
                    session_id=session_id,
                    tool_responses=[
                        {"call_id": "call_fr", "tool_name": "lookup_capital", "content": "Paris"}
                    ],
                    stream=True,
                )
                after = [c.event.payload async for c in resumed]
                turn = await client.agents.turn.retrieve(
                    turn_id, agent_id=agent_id, session_id=session_id
                )
            attempts = (await task.get()).attempt_count
    assert [p.event_type for p in after][-1] == "turn_complete"
    assert turn.output_message.content == "TOOL SAID: Paris"
    assert [s.step_type for s in turn.steps] == ["inference", "tool_execution", "inference"]
    # The second attempt replayed the model's first answer: the model was asked twice in
    # all, the second time with the tool's response.
    assert len(model.requests) == 2
    assert model.requests[1].messages[-1]["role"] == "tool"
    assert attempts == 2
