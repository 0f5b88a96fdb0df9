"""Task attempts that services in other languages report through the Queue API.

A service takes its tasks with Subscribe on ``topics/tasks.{service}`` and reports
what happens to each delivery: BeginTaskAttempt, ReportTaskEvent, CompleteTaskAttempt.
What a delivery and an outcome lead to is decided by core/attempt_policy.py, exactly as
for a Python replica, and ``jetstream.delivery.settle`` carries it out: the control
plane records the event, dead-letters the task if it failed for good, and only then
acks or naks the delivery by its ack id. The caller must act for the task's service
and name, with an ack id Subscribe gave to the caller itself, a delivery of that
service's own consumer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from llama_mesh.control_plane.ack_ids import ACK, AckId, AckIdSigner, nak
from llama_mesh.core import proto_time
from llama_mesh.core.attempt_policy import (
    Cancelled,
    DeadlinePassed,
    Decision,
    Failed,
    HandedBack,
    Outcome,
    Settle,
    Succeeded,
    begin_attempt,
    end_attempt,
)
from llama_mesh.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from llama_mesh.core.lifecycle import (
    MESH_EVENT_PREFIX,
    WAITING,
    check_current_attempt,
    is_final,
)
from llama_mesh.core.limits import (
    MAX_EVENT_BYTES,
    MAX_TYPE_NAME_CHARS,
    check_bytes,
    check_chars,
    cut,
)
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.delivery import settle
from llama_mesh.jetstream.journal import task_key
from llama_mesh.rpc.identity import caller
from llama_mesh.telemetry import metrics
from llama_mesh.telemetry.logs import about_task
from llama_mesh.v1 import queue_pb2 as q
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)

# Sends an ack reply (`+ACK`, `-NAK …`) to an ack id; confirmed by the server if asked.
Answer = Callable[[str, bytes, bool], Awaitable[None]]


class AckIdDelivery:
    """A delivery to a Queue API subscriber, settled by its ack id."""

    def __init__(self, ack_id: AckId, answer: Answer) -> None:
        self._ack_id = ack_id
        self._answer = answer

    @property
    def delivery_count(self) -> int:
        return self._ack_id.delivery_count

    async def ack(self) -> None:
        await self._answer(self._ack_id.text, ACK, True)

    async def nak(self, delay: float) -> None:
        await self._answer(self._ack_id.text, nak(int(delay * 1e9)), False)


_INTERRUPTIONS: dict[int, Outcome] = {
    q.ATTEMPT_INTERRUPTION_DEADLINE_EXCEEDED: DeadlinePassed(),
    q.ATTEMPT_INTERRUPTION_CANCELLED: Cancelled("cancelled"),
    q.ATTEMPT_INTERRUPTION_REPLICA_STOPPING: HandedBack(stopping=True),
    q.ATTEMPT_INTERRUPTION_REPLICA_FAILED: HandedBack(stopping=False),
}


def _outcome(request: q.CompleteTaskAttemptRequest) -> Outcome:
    match request.WhichOneof("outcome"):
        case "result":
            return Succeeded(request.result)
        case "failure":
            failure = request.failure
            if not failure.error_type:
                raise InvalidArgumentError(
                    "failure.error_type is required: the error's type name, e.g. 'TimeoutError'"
                )
            check_chars("failure.error_type", failure.error_type, MAX_TYPE_NAME_CHARS)
            return Failed(failure.error_type, cut(failure.message), failure.retryable)
        case "interruption" if request.interruption in _INTERRUPTIONS:
            return _INTERRUPTIONS[request.interruption]
    raise InvalidArgumentError(
        "an outcome is required: set result, failure or interruption (not UNSPECIFIED)"
    )


class TaskAttempts:
    """The attempt RPCs of the Queue API; `answer` sends ack replies for it."""

    def __init__(self, state: MeshState, signer: AckIdSigner, answer: Answer) -> None:
        self.state = state
        self._signer = signer
        self._answer = answer

    async def _delivered(
        self, name_text: str, ack_text: str, what: str
    ) -> tuple[TaskName, tuple[resources_pb2.Task, int] | None, AckIdDelivery]:
        """The task and the delivery a report names, once the caller may make it."""
        name = TaskName.parse(name_text, "name")
        topology = self.state.topology
        if not ack_text:
            raise InvalidArgumentError(
                "ack_id is required: the ack id of the task's delivery from Subscribe on "
                "'topics/tasks.{service}'"
            )
        signed = self._signer.open(ack_text, caller().subject)
        ack_id = signed.reply
        prefix = topology.service_consumer("")
        if (
            ack_id.stream != topology.task_stream
            or not ack_id.consumer.startswith(prefix)
            or signed.topic != f"topics/tasks.{ack_id.consumer.removeprefix(prefix)}"
        ):
            raise InvalidArgumentError(
                f"ack_id {ack_text[:80]!r} is not the ack id of a task delivered by Subscribe "
                "on 'topics/tasks.{service}'"
            )
        service = ack_id.consumer.removeprefix(prefix)
        caller().require_service(service, f"{what} of service {service!r}")
        found = await self.state.tasks.find(task_key(name))
        if found is not None:
            caller().require_service(found[0].service, f"{what} of service {found[0].service!r}")
        if found is not None and found[0].service != service:
            raise InvalidArgumentError(
                f"ack_id {ack_text[:80]!r} is of a delivery on 'topics/tasks.{service}', but task "
                f"{name_text!r} is of service {found[0].service!r}"
            )
        return name, found, AckIdDelivery(ack_id, self._answer)

    async def begin(self, request: q.BeginTaskAttemptRequest) -> q.BeginTaskAttemptResponse:
        name, found, delivery = await self._delivered(
            request.name, request.ack_id, "begin an attempt"
        )
        if delivery.delivery_count > 1 and found is not None:
            metrics.REDELIVERIES.labels(found[0].service).inc()
        if found is None:
            logger.info("task %s: gone (session deleted); dropped", name, extra=about_task(name))
            await delivery.ack()
            return q.BeginTaskAttemptResponse(run=False)
        start = begin_attempt(found[0], time.time())
        if isinstance(start, Decision):
            after = await settle(
                self.state, name, start, delivery, replica_id=request.replica_id, known=found
            )
            return q.BeginTaskAttemptResponse(run=False, task=after or await self._task(name))
        try:
            task, _ = await self.state.journal.record_from(
                name, start.event, replica_id=request.replica_id, publish=False, known=found
            )
        except FailedPreconditionError:
            task = await self._task(name)
            if not is_final(task.state):
                raise
            # Finished meanwhile (cancelled while pending, e.g.).
            await delivery.ack()
            return q.BeginTaskAttemptResponse(run=False, task=task)
        metrics.attempt_began(task, start.attempt)
        logger.info(
            "task %s: attempt %d begun by replica %s",
            name,
            start.attempt,
            request.replica_id,
            extra=about_task(name, task.service),
        )
        return q.BeginTaskAttemptResponse(run=True, attempt=start.attempt, task=task)

    async def report(self, request: q.ReportTaskEventRequest) -> q.ReportTaskEventResponse:
        if not request.type:
            raise InvalidArgumentError('type is required: the event\'s type name, e.g. "Progress"')
        if request.type.startswith(MESH_EVENT_PREFIX):
            raise InvalidArgumentError(
                f"type {request.type!r}: types starting {MESH_EVENT_PREFIX!r} are the mesh's own"
            )
        check_chars("type", request.type, MAX_TYPE_NAME_CHARS)
        check_bytes("payload", request.payload.ByteSize(), MAX_EVENT_BYTES)
        name, found, _ = await self._delivered(request.name, request.ack_id, "report an event")
        if found is None:
            raise NotFoundError(f"task {request.name!r} not found")
        task = found[0]
        check_current_attempt(task, request.attempt)
        event = resources_pb2.TaskEvent(type=request.type, attempt=request.attempt)
        if request.HasField("payload"):
            event.payload.CopyFrom(request.payload)
        if request.input_required:
            event.state = WAITING
            task = await self.state.journal.record(name, event)
            event.sequence = task.input_request.sequence
        else:
            event.sequence = await self.state.journal.publish(name, event)
        return q.ReportTaskEventResponse(event=event, cancel_requested=task.cancel_requested)

    async def complete(
        self, request: q.CompleteTaskAttemptRequest
    ) -> q.CompleteTaskAttemptResponse:
        outcome = _outcome(request)
        name, found, delivery = await self._delivered(
            request.name, request.ack_id, "complete an attempt"
        )
        if found is None:
            raise NotFoundError(f"task {request.name!r} not found")
        task = found[0]
        if is_final(task.state):
            await delivery.ack()
            return q.CompleteTaskAttemptResponse(task=task)
        check_current_attempt(task, request.attempt)
        if isinstance(outcome, Cancelled) and not task.cancel_requested:
            raise FailedPreconditionError(
                f"task {request.name!r} was not cancelled: complete its attempt with a "
                "result, a failure or another interruption"
            )
        if isinstance(outcome, DeadlinePassed) and not task.HasField("deadline"):
            raise FailedPreconditionError(f"task {request.name!r} has no deadline")
        decision = end_attempt(task, request.attempt, outcome)
        after = await settle(self.state, name, decision, delivery, known=found)
        response = q.CompleteTaskAttemptResponse(task=after or await self._task(name))
        if decision.settle is Settle.NAK and decision.event is not None:
            response.retry_delay.CopyFrom(proto_time.duration(decision.delay))
        return response

    async def _task(self, name: TaskName) -> resources_pb2.Task:
        return await self.state.tasks.get(task_key(name), str(name))
