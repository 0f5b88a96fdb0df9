"""The conversation is the session's, not a replica's: runs on replicas in their own
processes, one of them SIGKILLed after it served a run, another in the middle of the
model's answer, carry it on."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mesh_agents import SYSTEM_PROMPT
from nats import connect
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from llama_mesh.client import AsyncClient
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.testing import Pause, Reply, ScriptedModel
from llama_mesh.v1 import resources_pb2

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


@pytest.mark.timeout(300)
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


class Deliveries:
    """Every task message JetStream hands a replica, seen beside the replica: a pull
    consumer's messages go to the replica's inbox, and a second subscriber on the inbox
    subjects gets a copy, with the subject the replica would ack it on."""

    def __init__(self) -> None:
        self.replies: dict[str, str] = {}  # task name -> ack subject of its last delivery
        self._arrived = asyncio.Condition()

    async def on_message(self, msg: Msg) -> None:
        if not msg.reply.startswith("$JS.ACK."):
            return
        envelope = resources_pb2.Envelope.FromString(msg.data)
        if envelope.HasField("task_assignment"):
            async with self._arrived:
                self.replies[envelope.task_assignment.task.name] = msg.reply
                self._arrived.notify_all()

    async def of(self, task: str) -> str:
        async with self._arrived:
            await self._arrived.wait_for(lambda: task in self.replies)
        return self.replies[task]


@pytest.mark.timeout(300)
async def test_a_run_cut_off_by_a_sigkill_runs_again_from_the_saved_conversation(
    nats: EmbeddedNats, model: ScriptedModel, model_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRIPTED_MODEL_URL", model_url)
    pause = Pause()
    model.script("one", Reply(chunks=["tw", pause, "o"]), "two again", "three")
    deliveries = Deliveries()
    async with (
        ControlPlaneServer.start([nats.url]) as cp,
        AsyncClient(cp.address) as client,
        connected(nats.url) as nc,
    ):
        await nc.subscribe("_INBOX.>", cb=deliveries.on_message)
        session = await client.create_session()
        async with replica(cp.address):
            await session.run("assistant", user_msg="first")
        async with replica(cp.address) as (process, _):
            second = await session.create_task("assistant", user_msg="second")
            # The replica is in the middle of the model's answer: kill it there.
            assert await asyncio.to_thread(pause.reached.wait, 120)
            process.send_signal(signal.SIGKILL)
            await process.wait()
        # What JetStream does once ack_wait has passed without a word from the dead
        # replica, done now: the delivery it held is handed back.
        await nc.publish(await deliveries.of(second.name), b"-NAK")
        pause.release()
        async with replica(cp.address):
            assert (await second.result())["response"] == "two again"
            await session.run("assistant", user_msg="third")
        task = await second.get()
    assert task.attempt_count == 2
    # The cut-off answer never reached the conversation; the run that went again did.
    assert model.requests[2].texts()[1:] == ["first", "one", "second"]
    assert model.requests[3].texts()[1:] == ["first", "one", "second", "two again", "third"]
    assert len(model.requests) == 4


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[NatsClient]:
    nc = await connect(url)
    try:
        yield nc
    finally:
        await nc.close()
