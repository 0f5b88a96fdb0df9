"""A service's task consumer is the control plane's: it makes it, or puts it right, as a
replica registers, and the replicas only bind to it (their NATS users may not create or
change a consumer of the task stream: test_nats_permissions.py).

A consumer that is not what it must be (left by an older version, or pointed at another
service's tasks while replicas could still change it) is corrected at the next
registration, even one JetStream cannot update in place (a push consumer), and so is
another service's consumer that took its tasks. Its ack wait
is the one the replica asks for when no other replica of the service runs; a replica
that joins running ones goes by the consumer's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import nats as nats_py
import pytest
from nats.js import api

from llama_mesh.client import AsyncClient
from llama_mesh.config import ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.worker.runtime import ServiceRuntime

from mesh_workflows import EchoWorkflow


@contextlib.asynccontextmanager
async def _replica(cp: ControlPlaneServer, ack_wait: float) -> AsyncIterator[ServiceRuntime]:
    async with ServiceRuntime.start(
        EchoWorkflow(), ServiceConfig("echo", ack_wait=ack_wait), cp.address, drain_timeout=2.0
    ) as runtime:
        yield runtime


async def _consumer(server: EmbeddedNats) -> api.ConsumerConfig:
    nc = await nats_py.connect(server.url)
    try:
        info: api.ConsumerInfo = await nc.jetstream().consumer_info("MESH_TASKS", "svc_echo")
        return info.config
    finally:
        await nc.close()


@pytest.mark.parametrize("push", [False, True], ids=["pull", "push"])
async def test_registration_corrects_a_consumer_pointed_elsewhere(
    nats: EmbeddedNats, push: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async with ControlPlaneServer.start([nats.url]) as cp:
        nc = await nats_py.connect(nats.url)
        try:
            # What a replica could do before: its consumer filtered on `other`'s tasks
            # (and, for `push`, delivered to a subject of its choosing).
            await nc.jetstream().add_consumer(
                "MESH_TASKS",
                api.ConsumerConfig(
                    durable_name="svc_echo",
                    filter_subject="mesh.tasks.other",
                    ack_policy=api.AckPolicy.EXPLICIT,
                    deliver_subject="attacker.inbox" if push else None,
                    ack_wait=1.0,
                ),
            )
        finally:
            await nc.close()
        with caplog.at_level(logging.WARNING):
            async with _replica(cp, ack_wait=12.0), AsyncClient(cp.address) as client:
                config = await _consumer(nats)
                assert config.filter_subject == "mesh.tasks.echo"
                assert config.deliver_subject is None
                assert config.ack_wait == 12.0
                session = await client.create_session()
                assert await session.run("echo", arg1="hi") == "hi_result"
    assert "consumer svc_echo was filtered on mesh.tasks.other, not mesh.tasks.echo" in caplog.text


async def test_registration_takes_its_tasks_back_from_another_service_s_consumer(
    nats: EmbeddedNats,
) -> None:
    async with ControlPlaneServer.start([nats.url]) as cp:
        nc = await nats_py.connect(nats.url)
        try:
            # What a replica of `evil` could do before echo was deployed: its consumer
            # filtered on echo's tasks (echo's own then cannot be made: the task stream
            # is a work queue, one consumer per subject).
            await nc.jetstream().add_consumer(
                "MESH_TASKS",
                api.ConsumerConfig(
                    durable_name="svc_evil",
                    filter_subject="mesh.tasks.echo",
                    ack_policy=api.AckPolicy.EXPLICIT,
                ),
            )
            async with _replica(cp, ack_wait=12.0), AsyncClient(cp.address) as client:
                session = await client.create_session()
                assert await session.run("echo", arg1="hi") == "hi_result"
                infos = await nc.jetstream().consumers_info("MESH_TASKS")
                assert {i.name: i.config.filter_subject for i in infos} == {
                    "svc_evil": "mesh.tasks.evil",
                    "svc_echo": "mesh.tasks.echo",
                }
        finally:
            await nc.close()


async def test_the_first_replica_sets_the_ack_wait_and_others_go_by_it(
    nats: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    async with ControlPlaneServer.start([nats.url]) as cp:
        async with _replica(cp, ack_wait=5.0) as first:
            assert (await _consumer(nats)).ack_wait == 5.0
            assert first._worker is not None and first._worker.ack_wait == 5.0
            with caplog.at_level(logging.WARNING):
                async with _replica(cp, ack_wait=7.0) as second:
                    # The running replica keeps its tasks alive by 5 s: it stays.
                    assert (await _consumer(nats)).ack_wait == 5.0
                    assert second._worker is not None and second._worker.ack_wait == 5.0
            assert "this replica asked for 7.0s and goes by the consumer's" in caplog.text
        # None runs: the next replica's ack wait applies.
        async with _replica(cp, ack_wait=9.0) as third:
            assert (await _consumer(nats)).ack_wait == 9.0
            assert third._worker is not None and third._worker.ack_wait == 9.0
