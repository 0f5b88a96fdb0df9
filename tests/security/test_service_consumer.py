"""A service's task consumer is the control plane's: it makes it, or puts it right, as a
replica registers, and the replicas only bind to it (their NATS users may not create or
change a consumer of the task stream: test_nats_permissions.py).

A consumer that is not what it must be (left by an older version, or pointed at another
service's tasks while replicas could still change it) is corrected at the next
registration, even one JetStream cannot update in place (a push consumer), and so is
another service's consumer that took its tasks. Its ack wait
is the one the replica asks for when no other replica of the service runs; a replica
that joins running ones goes by the consumer's. A replica in another language that
subscribes through the Queue API places the consumer by the same rule, and each message
it gets says the ack wait to keep it alive by.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
import nats as nats_py
import pytest
from nats.js import api

from llama_mesh.client import AsyncClient
from llama_mesh.config import ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core import proto_time
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import control_plane_pb2 as cp_pb
from llama_mesh.v1 import control_plane_pb2_grpc, queue_pb2_grpc, resources_pb2
from llama_mesh.v1 import queue_pb2 as q
from llama_mesh.worker.runtime import ServiceRuntime

from mesh_workflows import EchoWorkflow


@contextlib.asynccontextmanager
async def _replica(cp: ControlPlaneServer, ack_wait: float) -> AsyncIterator[ServiceRuntime]:
    async with ServiceRuntime.start(
        EchoWorkflow(), ServiceConfig("echo", ack_wait=ack_wait), cp.address, drain_timeout=2.0
    ) as runtime:
        yield runtime


async def _consumer(server: EmbeddedNats, service: str = "echo") -> api.ConsumerConfig:
    nc = await nats_py.connect(server.url)
    try:
        info: api.ConsumerInfo = await nc.jetstream().consumer_info("MESH_TASKS", f"svc_{service}")
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


async def test_a_queue_api_subscriber_places_the_consumer_by_the_same_rule(
    nats: EmbeddedNats,
) -> None:
    async with (
        ControlPlaneServer.start([nats.url]) as cp,
        grpc.aio.insecure_channel(cp.address) as channel,
        AsyncClient(cp.address) as client,
    ):
        control = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
        queue = queue_pb2_grpc.QueueAPIStub(channel)
        await control.RegisterService(
            cp_pb.RegisterServiceRequest(
                service=resources_pb2.Service(name="services/remote"),
                replica=resources_pb2.Replica(replica_id="r1", runtime="node"),
                ack_wait=proto_time.duration(5.0),
            )
        )
        session = await client.create_session()

        async def subscribe(replica_id: str, ack_wait: float) -> q.QueueMessage:
            """One member's first message, then it leaves (the message handed back)."""
            stream = queue.Subscribe(
                q.SubscribeRequest(
                    topic="topics/tasks.remote",
                    consumer_group="remote",
                    ack_wait=proto_time.duration(ack_wait),
                    replica_id=replica_id,
                )
            )
            try:
                await session.create_task("remote")
                response = await stream.read()
                assert isinstance(response, q.SubscribeResponse)
                await queue.NakMessages(
                    q.NakMessagesRequest(
                        topic="topics/tasks.remote", ack_ids=[response.message.ack_id]
                    )
                )
                return response.message
            finally:
                stream.cancel()

        # r1 is live: another member's ack wait does not change the one r1 goes by,
        # and the member is told the group's.
        message = await subscribe("r2", 7.0)
        assert proto_time.seconds(message.ack_wait) == 5.0
        assert (await _consumer(nats, "remote")).ack_wait == 5.0
        # A member that names no replica counts every live one as other.
        message = await subscribe("", 7.0)
        assert proto_time.seconds(message.ack_wait) == 5.0
        # r1 alone, subscribing itself: its ack wait applies.
        message = await subscribe("r1", 8.0)
        assert proto_time.seconds(message.ack_wait) == 8.0
        assert (await _consumer(nats, "remote")).ack_wait == 8.0

        for bad in (0.0, 2 * 24 * 3600.0):
            stream = queue.Subscribe(
                q.SubscribeRequest(
                    topic="topics/tasks.remote",
                    consumer_group="remote",
                    ack_wait=proto_time.duration(bad),
                    replica_id="r1",
                )
            )
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stream.read()
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "ack_wait must be positive" in (raised.value.details() or "")
        assert (await _consumer(nats, "remote")).ack_wait == 8.0
