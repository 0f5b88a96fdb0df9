"""Queue API services report attempts; the control plane decides and settles them.

A "service" here is this test speaking the Queue API over gRPC, as a service in any
language would: Subscribe to its tasks, then BeginTaskAttempt, ReportTaskEvent and
CompleteTaskAttempt for each delivery.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from llama_mesh.client import AsyncSession
from llama_mesh.control_plane.ack_ids import AckIdSigner
from llama_mesh.core import proto_time
from llama_mesh.core.errors import TaskCancelledError, TaskDeadlineExceededError
from llama_mesh.jetstream.secrets import shared_key
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.rpc.identity import UNAUTHENTICATED_ADMIN
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import control_plane_pb2_grpc, queue_pb2_grpc, resources_pb2
from llama_mesh.v1 import queue_pb2 as q

SERVICE = "remote"
TOPIC = f"topics/tasks.{SERVICE}"


class Remote:
    """One replica of the `remote` service, on the Queue API."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.queue = queue_pb2_grpc.QueueAPIStub(channel)
        self.stream: Any = None

    async def deliveries(self) -> q.QueueMessage:
        if self.stream is None:
            self.stream = self.queue.Subscribe(
                q.SubscribeRequest(topic=TOPIC, consumer_group=SERVICE, max_in_flight=4)
            )
        response: q.SubscribeResponse = await self.stream.read()
        return response.message

    async def begin(self, message: q.QueueMessage) -> q.BeginTaskAttemptResponse:
        response: q.BeginTaskAttemptResponse = await self.queue.BeginTaskAttempt(
            q.BeginTaskAttemptRequest(
                name=message.envelope.task_assignment.task.name,
                ack_id=message.ack_id,
                replica_id="r1",
            )
        )
        return response

    async def complete(
        self, message: q.QueueMessage, attempt: int, **outcome: Any
    ) -> q.CompleteTaskAttemptResponse:
        response: q.CompleteTaskAttemptResponse = await self.queue.CompleteTaskAttempt(
            q.CompleteTaskAttemptRequest(
                name=message.envelope.task_assignment.task.name,
                ack_id=message.ack_id,
                attempt=attempt,
                **outcome,
            )
        )
        return response

    async def report(
        self, message: q.QueueMessage, attempt: int, type: str, **fields: Any
    ) -> q.ReportTaskEventResponse:
        response: q.ReportTaskEventResponse = await self.queue.ReportTaskEvent(
            q.ReportTaskEventRequest(
                name=message.envelope.task_assignment.task.name,
                ack_id=message.ack_id,
                attempt=attempt,
                type=type,
                **fields,
            )
        )
        return response


def text(value: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=value)


@pytest.fixture
async def mesh(nats: EmbeddedNats) -> AsyncIterator[tuple[LocalMesh, Remote, AsyncSession]]:
    async with (
        LocalMesh(nats_url=nats.url) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        policy = resources_pb2.RetryPolicy(
            max_attempts=3,
            initial_backoff=proto_time.duration(0.05),
            max_backoff=proto_time.duration(0.1),
            retryable_error_types=["Timeout"],
        )
        await control_plane_pb2_grpc.ControlPlaneAPIStub(channel).RegisterService(
            cp.RegisterServiceRequest(
                service=resources_pb2.Service(name=f"services/{SERVICE}", retry_policy=policy),
                replica=resources_pb2.Replica(replica_id="r1", runtime="test"),
            )
        )
        remote = Remote(channel)
        try:
            yield running, remote, await running.client.create_session()
        finally:
            if remote.stream is not None:
                remote.stream.cancel()


async def test_an_attempt_reports_events_and_its_result(
    mesh: tuple[LocalMesh, Remote, AsyncSession],
) -> None:
    _, remote, session = mesh
    handle = await session.create_task(SERVICE, text="hi")
    message = await remote.deliveries()
    begun = await remote.begin(message)
    assert (begun.run, begun.attempt) == (True, 1)
    assert begun.task.state == resources_pb2.TASK_STATE_RUNNING
    assert begun.task.replica_id == "r1"
    reported = await remote.report(message, 1, "Progress", payload=text("half"))
    assert reported.event.sequence > 0
    assert reported.cancel_requested is False
    done = await remote.complete(message, 1, result=text("HI"))
    assert done.task.state == resources_pb2.TASK_STATE_SUCCEEDED
    assert await handle.result() == "HI"
    events = [(e.type, e.state, e.attempt, e.payload) async for e in handle.events()]
    assert events == [("Progress", "RUNNING", 1, "half"), ("StopEvent", "SUCCEEDED", 1, "HI")]
    # A repeat of the last call records nothing and says where the task is.
    again = await remote.complete(message, 1, result=text("other"))
    assert again.task.result == text("HI")


async def test_a_retryable_failure_is_retried_then_a_result_recorded(
    mesh: tuple[LocalMesh, Remote, AsyncSession],
) -> None:
    _, remote, session = mesh
    handle = await session.create_task(SERVICE)
    first = await remote.deliveries()
    assert (await remote.begin(first)).attempt == 1
    failure = q.AttemptFailure(error_type="Timeout", message="slow disk")
    retried = await remote.complete(first, 1, failure=failure)
    assert retried.task.state == resources_pb2.TASK_STATE_PENDING
    assert proto_time.seconds(retried.retry_delay) == pytest.approx(0.05)
    # The control plane nakked the delivery with the backoff: it comes again.
    second = await remote.deliveries()
    assert second.envelope.task_assignment.task.name == handle.name
    assert second.delivery_count == 2
    assert (await remote.begin(second)).attempt == 2
    await remote.complete(second, 2, result=text("ok"))
    assert await handle.result() == "ok"
    events = [(e.type, e.state, e.attempt, e.error_message) async for e in handle.events()]
    assert events == [
        ("llama_mesh.AttemptFailed", "PENDING", 1, "Timeout: slow disk"),
        ("StopEvent", "SUCCEEDED", 2, ""),
    ]


async def test_a_replica_that_stops_hands_the_task_back(
    mesh: tuple[LocalMesh, Remote, AsyncSession],
) -> None:
    _, remote, session = mesh
    handle = await session.create_task(SERVICE)
    first = await remote.deliveries()
    await remote.begin(first)
    stopping = q.ATTEMPT_INTERRUPTION_REPLICA_STOPPING
    back = await remote.complete(first, 1, interruption=stopping)
    assert back.task.state == resources_pb2.TASK_STATE_RUNNING  # nothing recorded
    second = await remote.deliveries()
    assert (await remote.begin(second)).attempt == 2  # the stopped attempt counts
    await remote.complete(second, 2, result=text("ok"))
    assert await handle.result() == "ok"


async def test_cancel_and_deadline_are_decided_by_the_control_plane(
    mesh: tuple[LocalMesh, Remote, AsyncSession],
) -> None:
    _, remote, session = mesh
    # A running task that is cancelled learns it when it reports, and stops.
    handle = await session.create_task(SERVICE)
    message = await remote.deliveries()
    await remote.begin(message)
    assert await handle.cancel("changed my mind") is True
    assert (await remote.report(message, 1, "Progress")).cancel_requested is True
    await remote.complete(message, 1, interruption=q.ATTEMPT_INTERRUPTION_CANCELLED)
    with pytest.raises(TaskCancelledError):
        await handle.result()
    # A task whose deadline passes while it runs.
    timed = await session.create_task(SERVICE, timeout=60)
    message = await remote.deliveries()
    await remote.begin(message)
    deadline = q.ATTEMPT_INTERRUPTION_DEADLINE_EXCEEDED
    await remote.complete(message, 1, interruption=deadline)
    with pytest.raises(TaskDeadlineExceededError):
        await timed.result()
    # A task cancelled before a replica began it is settled by BeginTaskAttempt.
    early = await session.create_task(SERVICE)
    message = await remote.deliveries()
    await early.cancel()
    begun = await remote.begin(message)
    assert begun.run is False
    assert begun.task.state == resources_pb2.TASK_STATE_CANCELLED


async def test_bad_reports_are_refused_with_a_reason(
    mesh: tuple[LocalMesh, Remote, AsyncSession],
) -> None:
    running, remote, session = mesh
    handle = await session.create_task(SERVICE)
    message = await remote.deliveries()
    await remote.begin(message)
    assert running.control_plane is not None
    state = running.control_plane.state
    signer = AckIdSigner(await shared_key(state.js, state.topology, "ack_ids"))

    async def refused(call: Any, code: grpc.StatusCode, match: str) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == code
        assert match in (caught.value.details() or "")

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await refused(remote.complete(message, 1), invalid, "an outcome is required")
    await refused(
        remote.complete(message, 1, failure=q.AttemptFailure(message="x")),
        invalid,
        "failure.error_type is required",
    )
    await refused(
        remote.complete(message, 1, interruption=q.ATTEMPT_INTERRUPTION_UNSPECIFIED),
        invalid,
        "an outcome is required",
    )
    await refused(remote.report(message, 1, ""), invalid, "type is required")
    await refused(remote.report(message, 1, "llama_mesh.AttemptFailed"), invalid, "the mesh's own")
    # A genuine ack id (signed with the control planes' key, for this caller) of a
    # delivery of another service's consumer.
    foreign = q.CompleteTaskAttemptRequest(
        name=handle.name,
        ack_id=signer.issue(
            "$JS.ACK.MESH_TASKS.svc_other.1.5.5.1700000000000000000.0",
            UNAUTHENTICATED_ADMIN.subject,
            "topics/tasks.other",
        ),
        attempt=1,
        result=text("x"),
    )
    await refused(remote.queue.CompleteTaskAttempt(foreign), invalid, "is of service 'remote'")
    for bad in ("not an ack id", "$JS.ACK.MESH_TASKS.svc_remote.1.5.5.1700000000000000000.0"):
        foreign.ack_id = bad
        await refused(remote.queue.CompleteTaskAttempt(foreign), invalid, "is not an ack id")
    # The delivery's own ack id, altered, or given to another identity.
    signed = AckIdSigner(b"k" * 32).issue(
        "$JS.ACK.MESH_TASKS.svc_remote.1.5.5.1700000000000000000.0",
        UNAUTHENTICATED_ADMIN.subject,
        TOPIC,
    )
    denied = grpc.StatusCode.PERMISSION_DENIED
    altered = (
        message.ack_id[:-5] + ("A" if message.ack_id[-5] != "A" else "B") + message.ack_id[-4:]
    )
    for bad in (altered, signed):
        foreign.ack_id = bad
        await refused(remote.queue.CompleteTaskAttempt(foreign), denied, "was not given to")
    precondition = grpc.StatusCode.FAILED_PRECONDITION
    await refused(remote.complete(message, 2, result=text("x")), precondition, "attempt 2")
    await refused(
        remote.complete(message, 1, interruption=q.ATTEMPT_INTERRUPTION_CANCELLED),
        precondition,
        "was not cancelled",
    )
    await refused(
        remote.complete(message, 1, interruption=q.ATTEMPT_INTERRUPTION_DEADLINE_EXCEEDED),
        precondition,
        "has no deadline",
    )
    # Publishing events is no way to report any more.
    event = resources_pb2.TaskEvent(task=handle.name, type="StopEvent")
    await refused(
        remote.queue.Publish(
            q.PublishRequest(
                topic=f"topics/events.{handle.name.rpartition('/')[2]}",
                envelope=resources_pb2.Envelope(task_event=event),
            )
        ),
        invalid,
        "CompleteTaskAttempt",
    )
    # Nothing was lost: the attempt still completes.
    assert (await handle.get()).state == resources_pb2.TASK_STATE_RUNNING
    await remote.complete(message, 1, result=text("fine"))
    assert await handle.result() == "fine"
