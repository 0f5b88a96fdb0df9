"""Every size limit is checked where data comes in: INVALID_ARGUMENT naming the field
and the limit, never INTERNAL from NATS refusing the write later (issue 12, item 6)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2
from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent

from llama_mesh.core.errors import InvalidArgumentError, TaskFailedError
from llama_mesh.core.limits import (
    MAX_ERROR_MESSAGE_BYTES,
    MAX_EVENT_BYTES,
    MAX_INPUT_BYTES,
    MAX_LABEL_VALUE_CHARS,
    MAX_LABELS,
    MAX_REASON_BYTES,
    MAX_RESULT_BYTES,
    MAX_SERVICE_BYTES,
)
from llama_mesh.core.status import status_code
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import control_plane_pb2_grpc, queue_pb2, queue_pb2_grpc, resources_pb2

from mesh_workflows import ApprovalWorkflow, EchoWorkflow, SlowWorkflow

# Under the 1 MiB that used to be documented for inputs, over NATS's max_payload
# once in a record: these gave INTERNAL (MaxPayloadError) before.
BIG = "x" * 900_000


def _input(**fields: Any) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(fields)
    return value


@pytest.fixture
async def mesh(nats: EmbeddedNats) -> AsyncIterator[LocalMesh]:
    workflows = {"echo": EchoWorkflow(), "approval": ApprovalWorkflow(), "slow": SlowWorkflow()}
    async with LocalMesh(workflows, nats_url=nats.url) as running:
        yield running


async def _invalid(call: object, request: object) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(request)  # type: ignore[operator]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    return str(raised.value.details())


async def test_task_fields_are_checked_on_create_and_run(mesh: LocalMesh) -> None:
    stub = control_plane_pb2_grpc.ControlPlaneAPIStub(mesh.client._channel)
    session = (await mesh.client.create_session()).name
    for call, request_type in (
        (stub.CreateTask, cp.CreateTaskRequest),
        (stub.RunTask, cp.RunTaskRequest),
    ):
        big_input = request_type(
            parent=session, task=resources_pb2.Task(service="echo", input=_input(arg1=BIG))
        )
        message = await _invalid(call, big_input)
        assert message.startswith("task.input is 9000")
        assert f"over the limit of {MAX_INPUT_BYTES} bytes" in message

        label = request_type(parent=session, task=resources_pb2.Task(service="echo"))
        label.task.labels["k"] = BIG
        message = await _invalid(call, label)
        assert message == (
            f"task.labels['k'] is {len(BIG)} characters, "
            f"over the limit of {MAX_LABEL_VALUE_CHARS} characters"
        )

        many = request_type(parent=session, task=resources_pb2.Task(service="echo"))
        for i in range(MAX_LABELS + 1):
            many.task.labels[f"k{i}"] = "v"
        assert await _invalid(call, many) == (
            f"task.labels has {MAX_LABELS + 1} labels, over the limit of {MAX_LABELS}"
        )
    # The limit itself is fine.
    at_limit = "x" * (MAX_INPUT_BYTES - 100)
    assert await (await mesh.client.get_session(session)).run("echo", arg1=at_limit) == (
        at_limit + "_result"
    )


async def test_session_labels_are_checked(mesh: LocalMesh) -> None:
    stub = control_plane_pb2_grpc.ControlPlaneAPIStub(mesh.client._channel)
    request = cp.CreateSessionRequest(session=resources_pb2.Session(labels={"big": BIG}))
    message = await _invalid(stub.CreateSession, request)
    assert message == (
        f"session.labels['big'] is {len(BIG)} characters, "
        f"over the limit of {MAX_LABEL_VALUE_CHARS} characters"
    )


async def test_cancel_reason_is_checked(mesh: LocalMesh) -> None:
    stub = control_plane_pb2_grpc.ControlPlaneAPIStub(mesh.client._channel)
    session = await mesh.client.create_session()
    task = await session.create_task("slow", seconds=30)
    message = await _invalid(stub.CancelTask, cp.CancelTaskRequest(name=task.name, reason=BIG))
    assert message == f"reason is {len(BIG)} bytes, over the limit of {MAX_REASON_BYTES} bytes"
    assert await task.cancel("too slow")


async def test_an_answers_payload_is_checked(mesh: LocalMesh) -> None:
    stub = control_plane_pb2_grpc.ControlPlaneAPIStub(mesh.client._channel)
    session = await mesh.client.create_session()
    task = await session.create_task("approval")
    async for event in task.events():
        if event.type == "InputRequiredEvent":
            break
    request = cp.SendTaskEventRequest(
        name=task.name, type="HumanResponseEvent", payload=_input(response=BIG)
    )
    message = await _invalid(stub.SendTaskEvent, request)
    assert message.startswith("payload is 9000")
    assert message.endswith(f"over the limit of {MAX_EVENT_BYTES} bytes")
    # Nothing was taken: the task still waits, and a fitting answer goes through.
    await task.send_event("HumanResponseEvent", response="yes")
    assert await task.result() == {"answer": "yes"}


async def test_a_service_definition_is_checked(mesh: LocalMesh) -> None:
    stub = control_plane_pb2_grpc.ControlPlaneAPIStub(mesh.client._channel)
    request = cp.RegisterServiceRequest(
        service=resources_pb2.Service(name="services/big", input_schema=_input(doc=BIG)),
        replica=resources_pb2.Replica(replica_id="r1"),
    )
    message = await _invalid(stub.RegisterService, request)
    assert message.startswith("service is 9000")
    assert f"over the limit of {MAX_SERVICE_BYTES} bytes" in message
    request.service.ClearField("input_schema")
    request.service.description = BIG
    message = await _invalid(stub.RegisterService, request)
    assert message.startswith(f"service.description is {len(BIG)} bytes, over the limit")


async def test_a_queue_api_report_is_checked(mesh: LocalMesh) -> None:
    stub = queue_pb2_grpc.QueueAPIStub(mesh.client._channel)
    session = await mesh.client.create_session()
    task = await session.create_task("slow", seconds=30)
    request = queue_pb2.ReportTaskEventRequest(
        name=task.name, type="Progress", payload=struct_pb2.Value(string_value=BIG)
    )
    message = await _invalid(stub.ReportTaskEvent, request)
    assert message.startswith("payload is 9000")
    assert message.endswith(f"over the limit of {MAX_EVENT_BYTES} bytes")
    request.ClearField("payload")
    request.type = "T" * 1000
    message = await _invalid(stub.ReportTaskEvent, request)
    assert message.startswith("type is 1000 characters")
    await task.cancel()


async def test_limits_reach_python_callers_typed(mesh: LocalMesh) -> None:
    session = await mesh.client.create_session()
    with pytest.raises(InvalidArgumentError, match=r"task\.input is \d+ bytes, over the limit"):
        await session.run("echo", arg1=BIG)


class Huge(Workflow):
    """Returns `size` bytes, or raises an error with a message of that size."""

    @step
    async def make(self, ev: StartEvent) -> StopEvent:
        data = "x" * int(ev.get("size"))
        if ev.get("fail"):
            raise ValueError(data)
        return StopEvent(result=data)


async def test_a_result_over_the_limit_fails_once_saying_so(nats: EmbeddedNats) -> None:
    # Before, the record could not be written, the replica handed the task back, and
    # the workflow ran again until attempts ran out ("stopped or crashed").
    async with LocalMesh({"huge": Huge()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with pytest.raises(TaskFailedError) as raised:
            await session.run("huge", size=MAX_RESULT_BYTES + 1)
        task = raised.value.task
        assert raised.value.error_type == "ResultTooLarge"
        assert status_code(task.error) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert task.error.message.startswith("the workflow's result is ")
        assert f"over the limit of {MAX_RESULT_BYTES} bytes" in task.error.message
        assert task.attempt_count == 1
        # An error message of any size is kept, cut to fit.
        with pytest.raises(TaskFailedError) as raised:
            await session.run("huge", size=2_000_000, fail=True)
        assert raised.value.error_type == "ValueError"
        assert raised.value.task.attempt_count == 1
        message = raised.value.task.error.message
        assert message.endswith("… (cut)")
        assert len(message.encode()) <= MAX_ERROR_MESSAGE_BYTES


class NotJson(Workflow):
    """Returns what JSON cannot hold: a NaN, or an infinity."""

    @step
    async def answer(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result={"mean": math.nan} if ev.get("nan") else [1, -math.inf])


async def test_a_result_json_cannot_hold_fails_the_task_once_saying_so(nats: EmbeddedNats) -> None:
    # Before, its conversion failed on the replica, which handed the task back: the
    # workflow ran again until attempts ran out ("stopped or crashed while running it").
    async with LocalMesh({"not-json": NotJson()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        for nan, what in ((True, "mean is NaN, which"), (False, "value[1] is -Infinity, which")):
            with pytest.raises(TaskFailedError) as raised:
                await session.run("not-json", nan=nan)
            assert raised.value.error_type == "ResultNotJson"
            assert raised.value.task.attempt_count == 1
            message = raised.value.task.error.message
            assert message.startswith("ResultNotJson: the workflow's result is not JSON: ")
            assert what in message


class Chatty(Workflow):
    """Streams one event of `size` bytes."""

    @step
    async def talk(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(Event(text="x" * int(ev.get("size"))))
        return StopEvent(result="done")


async def test_an_event_over_the_limit_fails_the_task_once(nats: EmbeddedNats) -> None:
    async with LocalMesh({"chatty": Chatty()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with pytest.raises(TaskFailedError) as raised:
            await session.run("chatty", size=2_000_000)
        assert raised.value.task.attempt_count == 1
        assert "the payload of event Event is" in raised.value.message
        assert f"over the limit of {MAX_EVENT_BYTES} bytes" in raised.value.message


def _field(message: Any, name: str, payload: bytes) -> bytes:
    """One length-delimited field of `message`'s type, encoded by hand: protobuf's own
    encoder refuses to build what its decoder would refuse."""
    tag = message.DESCRIPTOR.fields_by_name[name].number << 3 | 2
    size, length = len(payload), b""
    while True:
        length += bytes([size & 0x7F | (0x80 if size > 0x7F else 0)])
        size >>= 7
        if not size:
            return bytes([tag]) + length + payload


def _nested_struct(depth: int) -> bytes:
    """A Struct whose value `a` is a Struct whose value `a` is … `depth` times."""
    value = _field(struct_pb2.Value, "string_value", b"x")
    for _ in range(depth):
        entry = _field(struct_pb2.Struct.FieldsEntry, "key", b"a")
        entry += _field(struct_pb2.Struct.FieldsEntry, "value", value)
        struct = _field(struct_pb2.Struct, "fields", entry)
        value = _field(struct_pb2.Value, "struct_value", struct)
    return struct


async def test_a_request_that_does_not_decode_is_invalid_argument(mesh: LocalMesh) -> None:
    """grpc.aio answered it with UNKNOWN "Unexpected <class 'DecodeError'>": corrupt
    bytes, and JSON nested deeper than protobuf decodes (100 messages)."""
    stub = control_plane_pb2_grpc.ControlPlaneAPIStub(mesh.client._channel)
    session = (await stub.CreateSession(cp.CreateSessionRequest())).session.name
    task = _field(resources_pb2.Task, "service", b"echo")
    task += _field(resources_pb2.Task, "input", _nested_struct(40))
    deep = _field(cp.CreateTaskRequest, "parent", session.encode())
    deep += _field(cp.CreateTaskRequest, "task", task)
    create = mesh.client._channel.unary_unary(
        "/llama_mesh.v1.ControlPlaneAPI/CreateTask",
        request_serializer=lambda data: data,
        response_deserializer=cp.CreateTaskResponse.FromString,
    )
    for request in (deep, b"\xff\xff\xff"):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await create(request)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(raised.value.details()).startswith(
            "the request is not a valid llama_mesh.v1.CreateTaskRequest: "
        )
    tasks = await stub.ListTasks(cp.ListTasksRequest(parent=session))
    assert list(tasks.tasks) == []


async def test_a_tasks_timeout_and_retry_policy_and_a_sessions_overlap_are_checked(
    mesh: LocalMesh,
) -> None:
    """Each was stored as sent: a NaN or huge backoff multiplier made the backoff NaN or
    overflow, a timeout past year 9999 was INTERNAL (ValueError), and an unknown
    overlap policy acted as QUEUE."""
    stub = control_plane_pb2_grpc.ControlPlaneAPIStub(mesh.client._channel)
    session = (await stub.CreateSession(cp.CreateSessionRequest())).session.name
    year = duration_pb2.Duration(seconds=366 * 86400)
    cases: list[tuple[resources_pb2.Task, str]] = [
        (resources_pb2.Task(timeout=year), "task.timeout must be at most 365 days"),
        (
            resources_pb2.Task(timeout=duration_pb2.Duration(seconds=315_576_000_000)),
            "task.timeout must be at most",
        ),
        (
            resources_pb2.Task(retry_policy=resources_pb2.RetryPolicy(max_attempts=-1)),
            "task.retry_policy.max_attempts must be from 1 to 100, or 0 for the default",
        ),
        (
            resources_pb2.Task(retry_policy=resources_pb2.RetryPolicy(backoff_multiplier=math.nan)),
            "task.retry_policy.backoff_multiplier must be from 1 to 10",
        ),
        (
            resources_pb2.Task(retry_policy=resources_pb2.RetryPolicy(backoff_multiplier=1e300)),
            "task.retry_policy.backoff_multiplier must be from 1 to 10",
        ),
        (
            resources_pb2.Task(retry_policy=resources_pb2.RetryPolicy(initial_backoff=year)),
            "task.retry_policy.initial_backoff must be from 0 to 86400 s",
        ),
        (
            resources_pb2.Task(
                retry_policy=resources_pb2.RetryPolicy(retryable_error_types=["E"] * 65)
            ),
            "task.retry_policy.retryable_error_types has 65 names, over the limit of 64",
        ),
    ]
    for task, message in cases:
        task.service = "echo"
        for call, request in (
            (stub.CreateTask, cp.CreateTaskRequest(parent=session, task=task)),
            (stub.RunTask, cp.RunTaskRequest(parent=session, task=task)),
        ):
            assert (await _invalid(call, request)).startswith(message)
    overlap = resources_pb2.Session(overlap_policy=99)  # type: ignore[arg-type]
    refused = await _invalid(stub.CreateSession, cp.CreateSessionRequest(session=overlap))
    assert refused.startswith("session.overlap_policy 99 is not one of ")
