"""The task lifecycle: its states, which changes are legal, and the events that end a task.

Pure: no I/O, no asyncio. Every runtime (the Python worker, and the control plane on
behalf of services that use the Queue API) asks this module and attempt_policy.py
what to do and carries the answer out; nothing else decides.

    PENDING ──► RUNNING ◄──► WAITING_FOR_INPUT
       │           │
       │           ├──► SUCCEEDED / FAILED / CANCELLED
       │           └──► PENDING        (a retried attempt)
       └──► FAILED / CANCELLED         (deadline, attempts used up, cancel)

- ``apply_event`` turns a TaskEvent into a change of the task's record and refuses
  an illegal one; the journal (jetstream/journal.py) stores what it decides.
- ``request_cancel`` and ``accept_input`` are the two changes a client asks for
  (CancelTask, SendTaskEvent) and the control plane makes.
- What a delivery of the task does and what an attempt's outcome leads to (run,
  retry after a backoff, fail and dead-letter) is attempt_policy.py's decision.

    >>> task = resources_pb2.Task(name="sessions/s/tasks/t", state=PENDING)
    >>> apply_event(task, resources_pb2.TaskEvent(state=RUNNING, attempt=1))
    True
    >>> state_name(task.state), task.attempt_count
    ('RUNNING', 1)
    >>> apply_event(task, cancelled_event(1, "no longer needed")), state_name(task.state)
    (True, 'CANCELLED')
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import grpc

from llama_mesh.core import token_usage
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

# The states an event may move a task to, by the task's state. An event without a
# state changes none (progress); a final state takes nothing. PENDING -> PENDING is
# an attempt that failed before its RUNNING record landed.
TRANSITIONS: Mapping[int, frozenset[int]] = {
    PENDING: frozenset({PENDING, RUNNING, FAILED, CANCELLED}),
    RUNNING: frozenset({RUNNING, WAITING, PENDING, SUCCEEDED, FAILED, CANCELLED}),
    WAITING: frozenset({WAITING, RUNNING, PENDING, SUCCEEDED, FAILED, CANCELLED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}

# Event type names the mesh itself emits.
ATTEMPT_FAILED = "llama_mesh.AttemptFailed"
CHILD_TASK_CREATED = "llama_mesh.ChildTaskCreated"
MESH_EVENT_PREFIX = "llama_mesh."
STOP = "StopEvent"

DEADLINE_MESSAGE = "the task did not finish before its deadline; the workflow was stopped"


def is_final(state: int) -> bool:
    return state in FINAL_STATES


def state_name(state: int) -> str:
    """`RUNNING` for TASK_STATE_RUNNING."""
    return TaskState.Name(state).removeprefix("TASK_STATE_")  # type: ignore[arg-type]


# ------------------------------------------------------------------ events


def cancelled_event(attempt: int, reason: str) -> resources_pb2.TaskEvent:
    """The last event of a task that was cancelled."""
    return resources_pb2.TaskEvent(
        type=STOP,
        state=CANCELLED,
        attempt=attempt,
        error=task_status(grpc.StatusCode.CANCELLED, reason, "Cancelled"),
    )


def deadline_event(attempt: int, message: str = DEADLINE_MESSAGE) -> resources_pb2.TaskEvent:
    """The last event of a task whose deadline passed."""
    return resources_pb2.TaskEvent(
        type=STOP,
        state=FAILED,
        attempt=attempt,
        error=task_status(grpc.StatusCode.DEADLINE_EXCEEDED, message, "DeadlineExceeded"),
    )


def final_event(task: resources_pb2.Task) -> resources_pb2.TaskEvent:
    """The last event of a finished task, rebuilt from its record."""
    event = resources_pb2.TaskEvent(
        task=task.name, type=STOP, state=task.state, attempt=task.attempt_count
    )
    if task.state == SUCCEEDED:
        event.payload.CopyFrom(task.result)
    if task.HasField("error"):
        event.error.CopyFrom(task.error)
    event.create_time.CopyFrom(task.end_time if task.HasField("end_time") else now())
    return event


def check_transition(task: resources_pb2.Task, event: resources_pb2.TaskEvent) -> None:
    """FailedPreconditionError unless `event` may happen to `task` in its state."""
    target = event.state or task.state
    if is_final(task.state) or target not in TRANSITIONS[task.state]:
        what = event.type or "a state change"
        raise FailedPreconditionError(
            f"task {task.name!r} is {state_name(task.state)}"
            + (" (it has finished)" if is_final(task.state) else "")
            + f": it cannot take event {what} to {state_name(target)} "
            f"(attempt {event.attempt})"
        )


def apply_event(task: resources_pb2.Task, event: resources_pb2.TaskEvent) -> bool:
    """Apply `event` to `task` in place; False if the record need not change.

    Raises FailedPreconditionError for a change the lifecycle does not allow (any
    event on a finished task, e.g.).
    """
    check_transition(task, event)
    stamp = event.create_time if event.HasField("create_time") else now()
    if event.HasField("usage"):
        # Tokens of LLM calls the event reports: they add up, whatever else it says.
        token_usage.add(task.usage, event.usage)
        if not event.state:
            task.update_time.CopyFrom(stamp)
            return True
    state = event.state or task.state
    changed = state != task.state or event.attempt > task.attempt_count
    if not changed and state != WAITING:
        return False
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
        if task.HasField("ttl"):
            # A finished task is kept for its ttl (its session's), then expires.
            task.expire_time.FromNanoseconds(stamp.ToNanoseconds() + task.ttl.ToNanoseconds())
    task.state = state
    task.update_time.CopyFrom(stamp)
    return True


def check_current_attempt(task: resources_pb2.Task, attempt: int) -> None:
    """FailedPreconditionError unless `attempt` is the task's running attempt: the one
    a runtime may report events and an outcome for."""
    if task.state not in (RUNNING, WAITING) or attempt != task.attempt_count:
        now_at = (
            f"at attempt {task.attempt_count}"
            if task.state in (RUNNING, WAITING)
            else "not running an attempt"
        )
        raise FailedPreconditionError(
            f"attempt {attempt} of task {task.name!r} is not running: the task is "
            f"{state_name(task.state)}, {now_at}"
        )


# ------------------------------------------------------------------ client requests


class CancelStep(enum.Enum):
    """What cancelling a task takes, by its state (``request_cancel``)."""

    FINISHED = "finished"  # nothing: it has finished
    NOW = "now"  # no replica has it (PENDING): record cancelled_event now
    REQUESTED = "requested"  # a replica runs it: now marked; signal the replica
    ALREADY_REQUESTED = "already_requested"  # marked before; signal again


def request_cancel(task: resources_pb2.Task) -> CancelStep:
    """Cancel `task`: mark a running one `cancel_requested` in place (its replica ends
    it, with attempt_policy.Cancelled); what else it takes."""
    if is_final(task.state):
        return CancelStep.FINISHED
    if task.state == PENDING:
        return CancelStep.NOW
    if task.cancel_requested:
        return CancelStep.ALREADY_REQUESTED
    task.cancel_requested = True
    task.update_time.CopyFrom(now())
    return CancelStep.REQUESTED


_NOT_WAITING: Mapping[int, str] = {
    PENDING: "it has not started yet",
    RUNNING: "it is running",
    resources_pb2.TASK_STATE_SUCCEEDED: "it has succeeded",
    resources_pb2.TASK_STATE_FAILED: "it has failed",
    resources_pb2.TASK_STATE_CANCELLED: "it was cancelled",
}


def check_waiting(task: resources_pb2.Task) -> None:
    """FailedPreconditionError unless `task` waits for input: what it does instead, in
    words (it said "(state TASK_STATE_SUCCEEDED)")."""
    if task.state != WAITING:
        now = _NOT_WAITING.get(task.state, f"its state is {TaskState.Name(task.state)}")
        raise FailedPreconditionError(
            f"task {task.name!r} is not waiting for input: {now}; only a task in state "
            "WAITING_FOR_INPUT takes an answer or an event"
        )


def accept_input(task: resources_pb2.Task) -> None:
    """An answer to the task's question is stored: WAITING -> RUNNING, in place."""
    check_waiting(task)
    task.state = RUNNING
    task.ClearField("input_request")
    task.update_time.CopyFrom(now())
