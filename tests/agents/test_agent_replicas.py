"""The conversation is the session's, not a replica's: runs on replicas in their own
processes, one of them SIGKILLed after it served a run, carry it on."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mesh_agents import SYSTEM_PROMPT

from llama_mesh.client import AsyncClient
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.testing import ScriptedModel

from processes import component


@contextlib.asynccontextmanager
async def replica(
    control_plane: str, ack_wait: float = 30.0
) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    """A replica of `assistant` (mesh_agents:assistant) in a process of its own.

    `ack_wait` is how soon a task a dead replica held goes to another.
    """
    args = ("serve", "service", "mesh_agents:assistant", "--name", "assistant")
    async with component(
        *args, "--ack-wait", str(ack_wait), "--control-plane", control_plane
    ) as started:
        yield started


@pytest.mark.timeout(180)
async def test_the_conversation_survives_a_sigkill_of_the_replica_that_served_run_two(
    nats: EmbeddedNats, model: ScriptedModel, model_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRIPTED_MODEL_URL", model_url)
    model.script("one", "two", "three")
    async with ControlPlaneServer.start([nats.url]) as cp, AsyncClient(cp.address) as client:
        session = await client.create_session()
        async with replica(cp.address) as (_, first_replica):
            first = await session.create_task("assistant", user_msg="first")
            await first.result()
        async with replica(cp.address) as (process, second_replica):
            second = await session.create_task("assistant", user_msg="second")
            await second.result()
            process.send_signal(signal.SIGKILL)
            await process.wait()
        async with replica(cp.address) as (_, third_replica):
            third = await session.create_task("assistant", user_msg="third")
            assert (await third.result())["response"] == "three"
        served = [(await t.get()).replica_id for t in (first, second, third)]
    assert served == [r["replica_id"] for r in (first_replica, second_replica, third_replica)]
    assert len(set(served)) == 3
    assert [(m["role"], m["content"]) for m in model.requests[2].messages] == [
        ("system", SYSTEM_PROMPT),
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
        ("assistant", "two"),
        ("user", "third"),
    ]
