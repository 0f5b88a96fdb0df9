"""The task lifecycle: its states, which changes are legal, and what an attempt leads to.

Pure: no I/O, no asyncio; the caller passes the time. Every runtime (the Python
worker, and the control plane on behalf of services that use the Queue API) asks
this module what to do and carries the answer out; nothing else decides.

    PENDING ──► RUNNING ◄──► WAITING_FOR_INPUT
       │           │
       │           ├──► SUCCEEDED / FAILED / CANCELLED
       │           └──► PENDING        (a retried attempt)
       └──► FAILED / CANCELLED         (deadline, attempts used up, cancel)

- ``apply_event`` turns a TaskEvent into a change of the task's record and refuses
  an illegal one; the journal (jetstream/journal.py) stores what it decides.
- ``request_cancel`` and ``accept_input`` are the two changes a client asks for
  (CancelTask, SendTaskEvent) and the control plane makes.
- ``begin_attempt`` decides what a delivery of the task does: run attempt n, or
  settle it at once (finished before, cancel requested, attempts used up, deadline).
- ``end_attempt`` decides what an attempt's ``Outcome`` leads to: the event to
  record, and whether the message is acked, nakked after a backoff, or dead-lettered.

    >>> task = resources_pb2.Task(name="sessions/s/tasks/t", state=RUNNING, attempt_count=1)
    >>> decision = end_attempt(task, 1, Failed("Boom", "disk on fire"))
    >>> decision.settle, decision.dead_letter, state_name(decision.event.state)
    (<Settle.ACK: 'ack'>, True, 'FAILED')
    >>> end_attempt(task, 1, Failed("Boom", "disk on fire", retryable=True)).delay
    1.0
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2

from llama_mesh.core import token_usage
from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.core.limits import MAX_RESULT_BYTES
from llama_mesh.core.proto_time import duration, epoch_seconds, now, seconds
from llama_mesh.core.status import error_text, task_status
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

# The retry policy's defaults, for a task or service that leaves a field unset.
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 30.0
DEFAULT_BACKOFF_MULTIPLIER = 2.0
# A replica whose own calls failed (not the workflow's fault) hands the task back
# after this delay, so that a failing NATS or control plane is not hammered.
HAND_BACK_DELAY = 1.0

RESULT_TOO_LARGE = "ResultTooLarge"
DEADLINE_MESSAGE = "the task did not finish before its deadline; the workflow was stopped"
CANCELLED_BEFORE_START = "cancelled before it started"


def is_final(state: int) -> bool:
    return state in FINAL_STATES


def state_name(state: int) -> str:
    """`RUNNING` for TASK_STATE_RUNNING."""
    return TaskState.Name(state).removeprefix("TASK_STATE_")  # type: ignore[arg-type]


# ------------------------------------------------------------------ the retry policy


@dataclass(frozen=True)
class Retries:
    """A task's retry policy with every default filled in."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    initial_backoff: float = DEFAULT_INITIAL_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    retryable_error_types: tuple[str, ...] = ()

    @classmethod
    def of(cls, policy: resources_pb2.RetryPolicy) -> Retries:
        """Unset fields of `policy` take the defaults (an explicit zero backoff stays)."""
        return cls(
            max_attempts=policy.max_attempts or DEFAULT_MAX_ATTEMPTS,
            initial_backoff=(
                seconds(policy.initial_backoff)
                if policy.HasField("initial_backoff")
                else DEFAULT_INITIAL_BACKOFF
            ),
            max_backoff=(
                seconds(policy.max_backoff)
                if policy.HasField("max_backoff")
                else DEFAULT_MAX_BACKOFF
            ),
            backoff_multiplier=policy.backoff_multiplier or DEFAULT_BACKOFF_MULTIPLIER,
            retryable_error_types=tuple(policy.retryable_error_types),
        )

    def to_proto(self) -> resources_pb2.RetryPolicy:
        return resources_pb2.RetryPolicy(
            max_attempts=self.max_attempts,
            initial_backoff=duration(self.initial_backoff),
            max_backoff=duration(self.max_backoff),
            backoff_multiplier=self.backoff_multiplier,
            retryable_error_types=self.retryable_error_types,
        )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1 = the first)."""
        delay: float = self.initial_backoff * self.backoff_multiplier ** (attempt - 1)
        return min(delay, self.max_backoff)

    def retries(self, error_type: str, retryable: bool, attempt: int) -> bool:
        """Whether a failure of attempt `attempt` gets another attempt."""
        return (retryable or error_type in self.retryable_error_types) and (
            attempt < self.max_attempts
        )


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
    it, with lifecycle.Cancelled); what else it takes."""
    if is_final(task.state):
        return CancelStep.FINISHED
    if task.state == PENDING:
        return CancelStep.NOW
    if task.cancel_requested:
        return CancelStep.ALREADY_REQUESTED
    task.cancel_requested = True
    task.update_time.CopyFrom(now())
    return CancelStep.REQUESTED


def check_waiting(task: resources_pb2.Task) -> None:
    """FailedPreconditionError unless `task` waits for input."""
    if task.state != WAITING:
        raise FailedPreconditionError(
            f"task {task.name!r} is not waiting for input (state {TaskState.Name(task.state)})"
        )


def accept_input(task: resources_pb2.Task) -> None:
    """An answer to the task's question is stored: WAITING -> RUNNING, in place."""
    check_waiting(task)
    task.state = RUNNING
    task.ClearField("input_request")
    task.update_time.CopyFrom(now())


# ------------------------------------------------------------------ attempts


class Settle(enum.Enum):
    """What becomes of the message that delivered the task."""

    ACK = "ack"  # done: never delivered again
    NAK = "nak"  # delivered again after the decision's delay


@dataclass(frozen=True)
class Decision:
    """What to do with a delivered task, in this order: record `event` through the
    journal (or, with `republish`, only publish it again: the task had finished
    before), publish a dead letter if `dead_letter`, then settle the message."""

    settle: Settle
    event: resources_pb2.TaskEvent | None = None
    delay: float = 0.0
    dead_letter: bool = False
    republish: bool = False


@dataclass(frozen=True)
class Run:
    """Run the task now as attempt `attempt` (1 = the first)."""

    attempt: int

    @property
    def event(self) -> resources_pb2.TaskEvent:
        """What to record first: the task is RUNNING its attempt `attempt` (a bare
        state change, published to nobody)."""
        return resources_pb2.TaskEvent(state=RUNNING, attempt=self.attempt)


@dataclass(frozen=True)
class Succeeded:
    """The workflow returned `result`."""

    result: struct_pb2.Value


@dataclass(frozen=True)
class Failed:
    """The workflow raised `error_type` (its class name) with `message`; `retryable`
    when it raised RetryableError (or the runtime's equivalent). `code` is the task's
    status code: UNKNOWN for the workflow's own errors, the MeshError's code for the
    mesh's (RESOURCE_EXHAUSTED for a token budget used up, e.g.). `debug` says where it
    raised (core/tracebacks.py), when the runtime tells."""

    error_type: str
    message: str
    retryable: bool = False
    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    debug: error_details_pb2.DebugInfo | None = None


@dataclass(frozen=True)
class DeadlinePassed:
    """The runtime stopped the workflow because the task's deadline passed."""


@dataclass(frozen=True)
class Cancelled:
    """The runtime stopped the workflow because the task was cancelled."""

    reason: str


@dataclass(frozen=True)
class HandedBack:
    """The runtime gives the task back unfinished: its replica is `stopping`, or its
    own calls (NATS, the control plane) failed. The attempt counts."""

    stopping: bool


Outcome = Succeeded | Failed | DeadlinePassed | Cancelled | HandedBack


def begin_attempt(task: resources_pb2.Task, at: float) -> Run | Decision:
    """What a delivery of `task` at time `at` (epoch seconds) does.

    Attempts are counted in the record, not by deliveries: a message handed back by
    a paused or draining replica before it began did not start one.
    """
    if is_final(task.state):
        # Finished before (cancelled while pending, or its replica stopped after
        # recording the result): make sure its last event is out, then let it go.
        return Decision(Settle.ACK, final_event(task), republish=True)
    attempt = task.attempt_count + 1
    if task.cancel_requested:
        return end_attempt(task, attempt, Cancelled(CANCELLED_BEFORE_START))
    max_attempts = Retries.of(task.retry_policy).max_attempts
    if attempt > max_attempts:
        # Only deliveries whose replica stopped or crashed get here: a failure the
        # workflow raised is decided in end_attempt.
        return Decision(
            Settle.ACK,
            resources_pb2.TaskEvent(
                type=STOP,
                state=FAILED,
                attempt=attempt,
                error=task_status(
                    grpc.StatusCode.ABORTED,
                    f"the task was delivered {attempt} times (its replicas stopped or "
                    f"crashed while running it); max_attempts is {max_attempts}",
                    "MaxAttemptsExceeded",
                ),
            ),
            dead_letter=True,
        )
    if task.HasField("deadline") and epoch_seconds(task.deadline) <= at:
        return end_attempt(task, attempt, DeadlinePassed())
    return Run(attempt)


def end_attempt(task: resources_pb2.Task, attempt: int, outcome: Outcome) -> Decision:
    """What attempt `attempt` of `task` ending with `outcome` leads to."""
    match outcome:
        case Succeeded(result):
            size = result.ByteSize()
            if size > MAX_RESULT_BYTES:
                # Running it again would give the same result: fail once, saying why.
                message = (
                    f"the workflow's result is {size} bytes, over the limit of "
                    f"{MAX_RESULT_BYTES} bytes: return a reference to large data instead"
                )
                status = task_status(grpc.StatusCode.RESOURCE_EXHAUSTED, message, RESULT_TOO_LARGE)
                return Decision(
                    Settle.ACK,
                    resources_pb2.TaskEvent(type=STOP, state=FAILED, attempt=attempt, error=status),
                    dead_letter=True,
                )
            event = resources_pb2.TaskEvent(type=STOP, state=SUCCEEDED, attempt=attempt)
            event.payload.CopyFrom(result)
            return Decision(Settle.ACK, event)
        case Failed(error_type, message, retryable, code, debug):
            status = task_status(code, error_text(error_type, message), error_type, debug)
            retries = Retries.of(task.retry_policy)
            if retries.retries(error_type, retryable, attempt):
                return Decision(
                    Settle.NAK,
                    resources_pb2.TaskEvent(
                        type=ATTEMPT_FAILED, state=PENDING, attempt=attempt, error=status
                    ),
                    delay=retries.backoff(attempt),
                )
            return Decision(
                Settle.ACK,
                resources_pb2.TaskEvent(type=STOP, state=FAILED, attempt=attempt, error=status),
                dead_letter=True,
            )
        case DeadlinePassed():
            return Decision(Settle.ACK, deadline_event(attempt))
        case Cancelled(reason):
            return Decision(Settle.ACK, cancelled_event(attempt, reason))
        case HandedBack(stopping):
            return Decision(Settle.NAK, delay=0.0 if stopping else HAND_BACK_DELAY)
