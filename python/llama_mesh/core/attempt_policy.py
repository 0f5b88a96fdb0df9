"""What a delivery of a task does and what an attempt's outcome leads to.

Pure: no I/O, no asyncio; the caller passes the time. The Python worker
(worker/attempt.py) and the control plane on behalf of Queue API services
(control_plane/attempts.py) both ask this module and carry the answer out.

- ``Retries`` is a task's retry policy with every default filled in.
- ``begin_attempt`` decides what a delivery of the task does: run attempt n, or
  settle it at once (finished before, cancel requested, attempts used up, deadline).
- ``end_attempt`` decides what an attempt's ``Outcome`` leads to: the event to
  record (through lifecycle.apply_event), and whether the message is acked, nakked
  after a backoff, or dead-lettered.

    >>> task = resources_pb2.Task(name="sessions/s/tasks/t", state=RUNNING, attempt_count=1)
    >>> decision = end_attempt(task, 1, Failed("Boom", "disk on fire"))
    >>> decision.settle, decision.dead_letter, decision.event.state == FAILED
    (<Settle.ACK: 'ack'>, True, True)
    >>> end_attempt(task, 1, Failed("Boom", "disk on fire", retryable=True)).delay
    1.0
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2

from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.lifecycle import (
    ATTEMPT_FAILED,
    FAILED,
    PENDING,
    RUNNING,
    STOP,
    SUCCEEDED,
    cancelled_event,
    deadline_event,
    final_event,
    is_final,
)
from llama_mesh.core.limits import MAX_RESULT_BYTES, MAX_TYPE_NAME_CHARS, check_chars
from llama_mesh.core.proto_time import duration, epoch_seconds, seconds
from llama_mesh.core.status import error_text, task_status
from llama_mesh.v1 import resources_pb2

# The retry policy's defaults, for a task or service that leaves a field unset.
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 30.0
DEFAULT_BACKOFF_MULTIPLIER = 2.0
MAX_ATTEMPTS = 100
MAX_BACKOFF = 86400.0
"""A day: the longest delay a retry policy may ask for between attempts."""
MAX_BACKOFF_MULTIPLIER = 10.0
MAX_RETRYABLE_TYPES = 64
# A replica whose own calls failed (not the workflow's fault) hands the task back
# after this delay, so that a failing NATS or control plane is not hammered.
HAND_BACK_DELAY = 1.0

RESULT_TOO_LARGE = "ResultTooLarge"
CANCELLED_BEFORE_START = "cancelled before it started"


# ------------------------------------------------------------------ the retry policy


def check_retry_policy(policy: resources_pb2.RetryPolicy, field: str) -> None:
    """InvalidArgumentError naming the field of `policy` out of its range: each was
    stored as sent, and a NaN or huge multiplier made the backoff NaN or overflow."""
    if not 0 <= policy.max_attempts <= MAX_ATTEMPTS:
        raise InvalidArgumentError(
            f"{field}.max_attempts must be from 1 to {MAX_ATTEMPTS}, or 0 for the default "
            f"(got {policy.max_attempts})"
        )
    for name in ("initial_backoff", "max_backoff"):
        delay = seconds(getattr(policy, name))
        if not 0 <= delay <= MAX_BACKOFF:
            raise InvalidArgumentError(
                f"{field}.{name} must be from 0 to {MAX_BACKOFF:g} s (got {delay:g} s)"
            )
    multiplier = policy.backoff_multiplier
    if multiplier != 0 and not 1 <= multiplier <= MAX_BACKOFF_MULTIPLIER:
        raise InvalidArgumentError(
            f"{field}.backoff_multiplier must be from 1 to {MAX_BACKOFF_MULTIPLIER:g}, or 0 "
            f"for the default (got {multiplier})"
        )
    types = policy.retryable_error_types
    if len(types) > MAX_RETRYABLE_TYPES:
        raise InvalidArgumentError(
            f"{field}.retryable_error_types has {len(types)} names, over the limit of "
            f"{MAX_RETRYABLE_TYPES}"
        )
    for name in types:
        check_chars(f"{field}.retryable_error_types[{name[:40]!r}]", name, MAX_TYPE_NAME_CHARS)


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
