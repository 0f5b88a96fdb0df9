"""The attacks of issue 13, each tried for real against a mesh with authentication on,
each failing to do harm."""

from __future__ import annotations

import asyncio
import base64
import json

import grpc
import pytest
from google.protobuf import struct_pb2

from llama_mesh.client import AsyncClient, Credentials
from llama_mesh.core.errors import PermissionDeniedError, UnauthenticatedError
from llama_mesh.core.lifecycle import SUCCEEDED, WAITING
from llama_mesh.v1 import (
    control_plane_pb2,
    control_plane_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
    resources_pb2,
    service_pb2,
    service_pb2_grpc,
)

from .conftest import SecureMesh
from mesh_workflows import ApprovalWorkflow, EchoWorkflow


async def test_a_client_with_a_token_runs_tasks_and_one_without_cannot(
    secure_mesh: SecureMesh,
) -> None:
    async with secure_mesh.client("client") as client:
        session = await client.create_session()
        assert await session.run("echo", arg1="hi") == "hi_result"
    async with secure_mesh.client(None) as anonymous:
        with pytest.raises(UnauthenticatedError) as caught:
            await anonymous.list_sessions()
    # The server's message, and where this client would have found a token.
    assert caught.value.message.startswith("this call needs credentials: ")
    assert caught.value.message.endswith(
        " (this client sent none: set LLAMA_MESH_TOKEN, or pass token=...)"
    )


async def test_an_anonymous_caller_cannot_steer_a_replica(secure_mesh: SecureMesh) -> None:
    replica = secure_mesh.replicas["echo"]
    async with grpc.aio.insecure_channel(replica.address) as channel:
        stub = service_pb2_grpc.ServiceAPIStub(channel)
        for who in (None, "client", "echo"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.DrainService(
                    service_pb2.DrainServiceRequest(), metadata=secure_mesh.metadata(who)
                )
            expected = "UNAUTHENTICATED" if who is None else "PERMISSION_DENIED"
            assert caught.value.code().name == expected
    assert not replica.draining and not replica.paused


async def _register(
    mesh: SecureMesh, who: str, service: resources_pb2.Service, replica_id: str
) -> control_plane_pb2.RegisterServiceResponse:
    async with grpc.aio.insecure_channel(mesh.control_plane) as channel:
        stub = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
        response: control_plane_pb2.RegisterServiceResponse = await stub.RegisterService(
            control_plane_pb2.RegisterServiceRequest(
                service=service, replica=resources_pb2.Replica(replica_id=replica_id)
            ),
            metadata=mesh.metadata(who),
        )
        return response


async def test_registration_cannot_hijack_a_running_service(secure_mesh: SecureMesh) -> None:
    async with secure_mesh.client("admin") as admin:
        before = await admin.get_service("echo")
    forged = resources_pb2.Service(name="services/echo", description="pwned")
    # Another service's identity cannot register echo at all.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _register(secure_mesh, "other", forged, "evil")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Echo's own identity cannot redefine echo while it runs ...
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _register(secure_mesh, "echo", forged, "second")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "only an admin may change a running service" in (caught.value.details() or "")
    async with secure_mesh.client("admin") as admin:
        after = await admin.get_service("echo")
        assert after.description == before.description
        assert [r.replica_id for r in after.replicas] == [r.replica_id for r in before.replicas]
    # ... but may add a replica with the same definition, and an admin may change it.
    same = resources_pb2.Service()
    same.CopyFrom(before)
    same.ClearField("replicas")
    await _register(secure_mesh, "echo", same, "second")
    changed = await _register(secure_mesh, "admin", forged, "third")
    assert changed.service.description == "pwned"


async def test_only_an_admin_removes_a_whole_service(secure_mesh: SecureMesh) -> None:
    async with grpc.aio.insecure_channel(secure_mesh.control_plane) as channel:
        stub = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.DeregisterService(
                control_plane_pb2.DeregisterServiceRequest(name="services/echo"),
                metadata=secure_mesh.metadata("echo"),
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with secure_mesh.client("client") as client:
        assert await (await client.create_session()).run("echo", arg1="x") == "x_result"


async def test_subscribing_to_another_services_tasks_is_denied(secure_mesh: SecureMesh) -> None:
    async with grpc.aio.insecure_channel(secure_mesh.control_plane) as channel:
        queue = queue_pb2_grpc.QueueAPIStub(channel)
        for who in ("other", "client"):
            stream = queue.Subscribe(
                queue_pb2.SubscribeRequest(topic="topics/tasks.echo", consumer_group="echo"),
                metadata=secure_mesh.metadata(who),
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stream.read()
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Echo's tasks still all go to echo.
    async with secure_mesh.client("client") as client:
        session = await client.create_session()
        results = await asyncio.gather(*(session.run("echo", arg1=i) for i in range(8)))
        assert results == [f"{i}_result" for i in range(8)]


@pytest.mark.timeout(60)
async def test_forged_events_input_and_ack_ids_are_refused(secure_mesh: SecureMesh) -> None:
    await secure_mesh.add_replica(ApprovalWorkflow(), "other", "other")
    async with secure_mesh.client("client") as client:
        session = await client.create_session()
        handle = await session.create_task("other", question="ship it?")
        async for event in handle.events():
            if event.state == "WAITING_FOR_INPUT":
                break
        task_id = handle.name.rpartition("/")[2]
        forged = resources_pb2.TaskEvent(task=handle.name, type="StopEvent", state=SUCCEEDED)
        forged.payload.string_value = "made up"
        async with grpc.aio.insecure_channel(secure_mesh.control_plane) as channel:
            queue = queue_pb2_grpc.QueueAPIStub(channel)
            attempts = [
                # A client, and another service, report the task's result ...
                ("client", f"topics/events.{task_id}", "task_event", forged),
                ("echo", f"topics/events.{task_id}", "task_event", forged),
                # ... or answer its question past SendTaskEvent ...
                (
                    "other",
                    f"topics/input.{task_id}",
                    "task_input",
                    resources_pb2.TaskInput(task=handle.name, type="HumanResponseEvent"),
                ),
                # ... or give echo a task of another service.
                (
                    "echo",
                    "topics/tasks.echo",
                    "task_assignment",
                    resources_pb2.TaskAssignment(task=handle.task),
                ),
            ]
            for who, topic, field, payload in attempts:
                envelope = resources_pb2.Envelope()
                getattr(envelope, field).CopyFrom(payload)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await queue.Publish(
                        queue_pb2.PublishRequest(topic=topic, envelope=envelope),
                        metadata=secure_mesh.metadata(who),
                    )
                assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, (who, topic)
        task = await handle.get()
        assert task.state == WAITING
        await handle.send_event("HumanResponseEvent", response="yes")
        assert await handle.result() == {"answer": "yes"}


@pytest.mark.timeout(60)
async def test_ack_ids_answer_only_the_subscription_they_came_from(
    secure_mesh: SecureMesh,
) -> None:
    """An ack id is signed for its subscriber and topic: the bare JetStream reply
    subject behind it, the same ack id in another identity's hands (even one of the
    same service), or on another topic, acks nothing."""
    async with secure_mesh.client("admin") as admin:
        for key_id in ("remote", "remote-2"):
            secure_mesh.tokens[key_id], _ = await admin.api_keys.create(
                ["service:remote"], key_id=key_id
            )
    async with (
        grpc.aio.insecure_channel(secure_mesh.control_plane) as channel,
        secure_mesh.client("client") as client,
    ):
        cp = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
        await cp.RegisterService(
            control_plane_pb2.RegisterServiceRequest(
                service=resources_pb2.Service(name="services/remote"),
                replica=resources_pb2.Replica(replica_id="r1"),
            ),
            metadata=secure_mesh.metadata("remote"),
        )
        handle = await (await client.create_session()).create_task("remote")
        queue = queue_pb2_grpc.QueueAPIStub(channel)
        stream = queue.Subscribe(
            queue_pb2.SubscribeRequest(topic="topics/tasks.remote", consumer_group="remote"),
            metadata=secure_mesh.metadata("remote"),
        )
        try:
            first = await stream.read()
            assert isinstance(first, queue_pb2.SubscribeResponse)
            message = first.message
            assert message.envelope.task_assignment.task.name == handle.name
            assert not message.ack_id.startswith("$JS.")  # opaque, not the reply subject
            body = message.ack_id.split(".")[1]
            reply, topic = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            assert (
                reply.startswith("$JS.ACK.MESH_TASKS.svc_remote.")
                and topic == "topics/tasks.remote"
            )
            tries = [
                # the reply subject itself, by the subscriber
                ("remote", "topics/tasks.remote", reply, grpc.StatusCode.INVALID_ARGUMENT),
                # the ack id, by another identity of the same service
                (
                    "remote-2",
                    "topics/tasks.remote",
                    message.ack_id,
                    grpc.StatusCode.PERMISSION_DENIED,
                ),
                # the ack id, by another service on its own topic
                ("echo", "topics/tasks.echo", message.ack_id, grpc.StatusCode.PERMISSION_DENIED),
            ]
            for who, on, ack_id, code in tries:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await queue.AckMessages(
                        queue_pb2.AckMessagesRequest(topic=on, ack_ids=[ack_id]),
                        metadata=secure_mesh.metadata(who),
                    )
                assert caught.value.code() == code, (who, on, ack_id)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await queue.NakMessages(
                        queue_pb2.NakMessagesRequest(topic=on, ack_ids=[ack_id]),
                        metadata=secure_mesh.metadata(who),
                    )
                assert caught.value.code() == code, (who, on, ack_id)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await queue.BeginTaskAttempt(
                        queue_pb2.BeginTaskAttemptRequest(name=handle.name, ack_id=ack_id),
                        metadata=secure_mesh.metadata(who),
                    )
                assert caught.value.code() in (code, grpc.StatusCode.PERMISSION_DENIED)
            # None of that touched the delivery: still pending, still the subscriber's.
            state = secure_mesh.server.state
            info = await state.js.consumer_info("MESH_TASKS", "svc_remote")
            assert info.num_ack_pending == 1 and info.num_redelivered == 0
            assert (await handle.get()).state == resources_pb2.TASK_STATE_PENDING
            begun = await queue.BeginTaskAttempt(
                queue_pb2.BeginTaskAttemptRequest(name=handle.name, ack_id=message.ack_id),
                metadata=secure_mesh.metadata("remote"),
            )
            assert begun.run and begun.attempt == 1
            await queue.CompleteTaskAttempt(
                queue_pb2.CompleteTaskAttemptRequest(
                    name=handle.name,
                    ack_id=message.ack_id,
                    attempt=1,
                    result=struct_pb2.Value(string_value="done"),
                ),
                metadata=secure_mesh.metadata("remote"),
            )
        finally:
            stream.cancel()
        assert await handle.result() == "done"


async def test_a_revoked_key_stops_working_everywhere(secure_mesh: SecureMesh) -> None:
    async with secure_mesh.client("admin") as admin:
        token, _ = await admin.api_keys.create(["client"], key_id="temp")
        async with AsyncClient(
            secure_mesh.control_plane, credentials=Credentials(token=token)
        ) as temp:
            assert (await temp.api_keys.whoami()).subject == "apiKeys/temp"
            await admin.api_keys.delete("temp")
            with pytest.raises(UnauthenticatedError):
                await temp.list_sessions()
        async with secure_mesh.client("client") as client:
            with pytest.raises(PermissionDeniedError):
                await client.api_keys.create(["admin"])


async def test_workflows_still_run_with_the_services_token(secure_mesh: SecureMesh) -> None:
    await secure_mesh.add_replica(EchoWorkflow(), "second-echo", "admin")
    async with secure_mesh.client("client") as client:
        session = await client.create_session()
        assert await session.run("second-echo", arg1="a") == "a_result"
