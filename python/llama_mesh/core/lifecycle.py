"""The task lifecycle: its states, which changes are legal, and the mesh's own events.

Pure: no I/O. Whoever runs a task reports what happens as TaskEvents, and
``apply_event`` is the one function that turns an event into a change of the task's
record; the journal (jetstream/journal.py) stores what it decides.
"""

from __future__ import annotations

import grpc

from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.core.proto_time import now
from llama_mesh.core.status import task_status
from llama_mesh.v1 import resources_pb2

TaskState = resources_pb2.TaskState
PENDING = resources_pb2.TASK_STATE_PENDING
RUNNING = resources_pb2.TASK_STATE_RUNNING
WAITING = resources_pb2.TASK_STATE_WAITING_FOR_INPUT
SUCCEEDED = resources_pb2.TASK_STATE_SUCCEEDED
FAILED = resources_pb2.TASK_STATE_FAILED
CANCELLED = resources_pb2.TASK_STATE_CANCELLED
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE_STATES = frozenset({PENDING, RUNNING, WAITING})

# Event type names the mesh itself emits.
ATTEMPT_FAILED = "llama_mesh.AttemptFailed"
CHILD_TASK_CREATED = "llama_mesh.ChildTaskCreated"
STOP = "StopEvent"


def is_final(state: int) -> bool:
    return state in FINAL_STATES


def cancelled_event(attempt: int, reason: str) -> resources_pb2.TaskEvent:
    """The last event of a task that was cancelled."""
    return resources_pb2.TaskEvent(
        type=STOP,
        state=CANCELLED,
        attempt=attempt,
        error=task_status(grpc.StatusCode.CANCELLED, reason, "Cancelled"),
    )


def deadline_event(attempt: int, message: str) -> resources_pb2.TaskEvent:
    """The last event of a task whose deadline passed."""
    return resources_pb2.TaskEvent(
        type=STOP,
        state=FAILED,
        attempt=attempt,
        error=task_status(grpc.StatusCode.DEADLINE_EXCEEDED, message, "DeadlineExceeded"),
    )


def apply_event(task: resources_pb2.Task, event: resources_pb2.TaskEvent) -> bool:
    """Apply `event` to `task` in place; False if the record need not change.

    Raises FailedPreconditionError for an event on a finished task.
    """
    if is_final(task.state):
        raise FailedPreconditionError(
            f"task {task.name!r} has finished ({TaskState.Name(task.state)}); "
            "it takes no more events"
        )
    state = event.state or task.state
    changed = state != task.state or event.attempt > task.attempt_count
    if not changed and state != WAITING:
        return False
    stamp = event.create_time if event.HasField("create_time") else now()
    if event.attempt > task.attempt_count:
        task.attempt_count = event.attempt
    if state == RUNNING and not task.HasField("start_time"):
        task.start_time.CopyFrom(stamp)
    if state == WAITING:
        task.input_request.CopyFrom(
            resources_pb2.InputRequest(
                sequence=event.sequence, event_type=event.type, payload=event.payload
            )
        )
    elif task.HasField("input_request"):
        task.ClearField("input_request")
    if state == SUCCEEDED:
        task.result.CopyFrom(event.payload)
    if event.HasField("error"):
        task.error.CopyFrom(event.error)
    elif state in (RUNNING, SUCCEEDED):
        task.ClearField("error")
    if is_final(state):
        task.end_time.CopyFrom(stamp)
        task.cancel_requested = False
    task.state = state
    task.update_time.CopyFrom(stamp)
    return True
