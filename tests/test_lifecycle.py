"""The task lifecycle (core/lifecycle.py, core/attempt_policy.py), table by table:
every state, every event, every outcome, with the exact decision each leads to."""

from __future__ import annotations

import doctest
from typing import Any, TypeAlias

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from llama_mesh.core import attempt_policy, lifecycle
from llama_mesh.core.attempt_policy import (
    Cancelled,
    DeadlinePassed,
    Decision,
    Failed,
    HandedBack,
    Outcome,
    Retries,
    Run,
    Settle,
    Succeeded,
    begin_attempt,
    end_attempt,
)
from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.core.lifecycle import (
    ATTEMPT_FAILED,
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    STOP,
    SUCCEEDED,
    WAITING,
    CancelStep,
    accept_input,
    apply_event,
    check_current_attempt,
    request_cancel,
)
from llama_mesh.core.proto_time import duration, timestamp
from llama_mesh.core.status import error_type, status_code, task_status
from llama_mesh.v1 import resources_pb2

NAME = "sessions/s/tasks/t"
NOW = 1_700_000_000.0
State: TypeAlias = resources_pb2.TaskState.ValueType
STATES: dict[str, State] = {
    "PENDING": PENDING,
    "RUNNING": RUNNING,
    "WAITING": WAITING,
    "SUCCEEDED": SUCCEEDED,
    "FAILED": FAILED,
    "CANCELLED": CANCELLED,
}
UNSET = resources_pb2.TASK_STATE_UNSPECIFIED


def task(state: State, attempt_count: int = 0, **fields: Any) -> resources_pb2.Task:
    return resources_pb2.Task(
        name=NAME, service="echo", state=state, attempt_count=attempt_count, **fields
    )


def value(text: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=text)


def event(state: State, attempt: int, type: str = STOP, **fields: Any) -> resources_pb2.TaskEvent:
    return resources_pb2.TaskEvent(type=type, state=state, attempt=attempt, **fields)


def test_docstring_examples_run() -> None:
    assert doctest.testmod(lifecycle, raise_on_error=True).attempted >= 3
    assert doctest.testmod(attempt_policy, raise_on_error=True).attempted >= 3


# ------------------------------------------------------------------ transitions

# from-state -> the event states it takes ("-" = an event without a state).
LEGAL = {
    "PENDING": "- PENDING RUNNING FAILED CANCELLED",
    "RUNNING": "- PENDING RUNNING WAITING SUCCEEDED FAILED CANCELLED",
    "WAITING": "- PENDING RUNNING WAITING SUCCEEDED FAILED CANCELLED",
    "SUCCEEDED": "",
    "FAILED": "",
    "CANCELLED": "",
}
TARGETS: dict[str, State] = {"-": UNSET, **STATES}


@pytest.mark.parametrize("source", STATES)
@pytest.mark.parametrize("target", TARGETS)
def test_every_transition_is_allowed_or_refused_by_name(source: str, target: str) -> None:
    record = task(STATES[source], attempt_count=1)
    change = event(TARGETS[target], attempt=1, type="Progress")
    if target in LEGAL[source].split():
        apply_event(record, change)
        assert record.state == (TARGETS[target] or STATES[source])
        return
    before = resources_pb2.Task()
    before.CopyFrom(record)
    with pytest.raises(FailedPreconditionError) as refused:
        apply_event(record, change)
    # The message names the task, its state and the event.
    message = refused.value.message
    assert NAME in message
    assert f"is {source}" in message
    assert "event Progress" in message
    assert record == before  # nothing was changed


def test_a_finished_task_says_so() -> None:
    with pytest.raises(FailedPreconditionError, match=r"is SUCCEEDED \(it has finished\)"):
        apply_event(task(SUCCEEDED, 1), event(FAILED, 1))


def test_running_sets_the_start_time_once_and_the_attempt() -> None:
    record = task(PENDING)
    first = event(RUNNING, 1, type="", create_time=timestamp(NOW))
    assert apply_event(record, first) is True
    assert (record.state, record.attempt_count) == (RUNNING, 1)
    assert record.start_time == timestamp(NOW)
    assert record.update_time == timestamp(NOW)
    # A second attempt (after a crash) keeps the first start time.
    assert apply_event(record, event(RUNNING, 2, type="", create_time=timestamp(NOW + 5)))
    assert (record.attempt_count, record.start_time) == (2, timestamp(NOW))


def test_progress_changes_nothing() -> None:
    record = task(RUNNING, 1)
    assert apply_event(record, event(UNSET, 1, type="Progress")) is False
    assert record == task(RUNNING, 1)


def test_waiting_keeps_the_request_and_running_clears_it() -> None:
    record = task(RUNNING, 1)
    asking = event(WAITING, 1, type="InputRequiredEvent", sequence=7, payload=value("ok?"))
    assert apply_event(record, asking) is True
    assert record.input_request == resources_pb2.InputRequest(
        sequence=7, event_type="InputRequiredEvent", payload=value("ok?")
    )
    assert apply_event(record, event(RUNNING, 1, type=""))
    assert not record.HasField("input_request")


def test_final_states_set_result_error_end_time_and_clear_cancel() -> None:
    record = task(RUNNING, 1, cancel_requested=True)
    record.error.CopyFrom(task_status(grpc.StatusCode.UNKNOWN, "earlier attempt", "Boom"))
    apply_event(record, event(SUCCEEDED, 1, payload=value("done"), create_time=timestamp(NOW)))
    assert record.result == value("done")
    assert not record.HasField("error")
    assert record.end_time == timestamp(NOW)
    assert record.cancel_requested is False

    failed = task(RUNNING, 1)
    status = task_status(grpc.StatusCode.UNKNOWN, "Boom: x", "Boom")
    apply_event(failed, event(FAILED, 1, error=status))
    assert (failed.state, failed.error, failed.HasField("result")) == (FAILED, status, False)


@pytest.mark.parametrize(
    ("state", "attempt", "running"),
    [
        (RUNNING, 2, True),
        (WAITING, 2, True),
        (RUNNING, 1, False),  # a newer attempt runs
        (RUNNING, 3, False),  # not begun
        (PENDING, 2, False),  # this attempt was retried already
        (PENDING, 0, False),
        (SUCCEEDED, 2, False),
        (FAILED, 2, False),
        (CANCELLED, 2, False),
    ],
)
def test_only_the_running_attempt_may_report(state: State, attempt: int, running: bool) -> None:
    record = task(state, attempt_count=2)
    if running:
        check_current_attempt(record, attempt)
        return
    with pytest.raises(FailedPreconditionError, match=f"attempt {attempt} of task '{NAME}'"):
        check_current_attempt(record, attempt)


# ------------------------------------------------------------------ client requests

CANCEL = {
    "PENDING": CancelStep.NOW,
    "RUNNING": CancelStep.REQUESTED,
    "WAITING": CancelStep.REQUESTED,
    "SUCCEEDED": CancelStep.FINISHED,
    "FAILED": CancelStep.FINISHED,
    "CANCELLED": CancelStep.FINISHED,
}


@pytest.mark.parametrize("state", STATES)
def test_cancel_in_every_state(state: str) -> None:
    record = task(STATES[state], 1)
    step = request_cancel(record)
    assert step is CANCEL[state]
    # Only a task a replica runs is marked; the replica ends it.
    assert record.cancel_requested is (step is CancelStep.REQUESTED)
    if step is CancelStep.REQUESTED:
        assert request_cancel(record) is CancelStep.ALREADY_REQUESTED


@pytest.mark.parametrize("state", STATES)
def test_an_answer_is_taken_only_by_a_waiting_task(state: str) -> None:
    record = task(STATES[state], 1)
    if state != "WAITING":
        with pytest.raises(FailedPreconditionError, match="is not waiting for input"):
            accept_input(record)
        assert record == task(STATES[state], 1)
        return
    record.input_request.event_type = "InputRequiredEvent"
    accept_input(record)
    assert record.state == RUNNING
    assert not record.HasField("input_request")
    # A second answer to the same question is refused.
    with pytest.raises(FailedPreconditionError, match="is not waiting for input: it is running;"):
        accept_input(record)


# ------------------------------------------------------------------ the retry policy


def test_retry_defaults_live_in_one_place() -> None:
    assert Retries.of(resources_pb2.RetryPolicy()) == Retries(
        max_attempts=3,
        initial_backoff=1.0,
        max_backoff=30.0,
        backoff_multiplier=2.0,
        retryable_error_types=(),
    )
    assert Retries().to_proto() == resources_pb2.RetryPolicy(
        max_attempts=3,
        initial_backoff=duration(1.0),
        max_backoff=duration(30.0),
        backoff_multiplier=2.0,
    )


def test_backoff_doubles_up_to_its_ceiling() -> None:
    assert [Retries().backoff(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
    custom = Retries.of(
        resources_pb2.RetryPolicy(
            initial_backoff=duration(0.5), max_backoff=duration(3), backoff_multiplier=3
        )
    )
    assert [custom.backoff(n) for n in range(1, 5)] == [0.5, 1.5, 3.0, 3.0]
    # An explicit zero is a zero, not the default.
    assert Retries.of(resources_pb2.RetryPolicy(initial_backoff=duration(0))).backoff(2) == 0


# ------------------------------------------------------------------ begin_attempt


def deadline(offset: float) -> dict[str, Any]:
    return {"deadline": timestamp(NOW + offset)}


def policy(max_attempts: int) -> dict[str, Any]:
    return {"retry_policy": resources_pb2.RetryPolicy(max_attempts=max_attempts)}


def max_attempts_event(attempt: int, max_attempts: int) -> resources_pb2.TaskEvent:
    return event(
        FAILED,
        attempt,
        error=task_status(
            grpc.StatusCode.ABORTED,
            f"the task was delivered {attempt} times (its replicas stopped or crashed while "
            f"running it); max_attempts is {max_attempts}",
            "MaxAttemptsExceeded",
        ),
    )


def cancel_event(attempt: int, reason: str) -> resources_pb2.TaskEvent:
    return event(
        CANCELLED, attempt, error=task_status(grpc.StatusCode.CANCELLED, reason, "Cancelled")
    )


def deadline_event(attempt: int) -> resources_pb2.TaskEvent:
    return event(
        FAILED,
        attempt,
        error=task_status(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "the task did not finish before its deadline; the workflow was stopped",
            "DeadlineExceeded",
        ),
    )


BEGIN: list[tuple[str, resources_pb2.Task, Run | Decision]] = [
    ("first delivery", task(PENDING), Run(1)),
    ("retried after a failure", task(PENDING, 1), Run(2)),
    ("its replica crashed", task(RUNNING, 1), Run(2)),
    ("crashed while waiting", task(WAITING, 2), Run(3)),
    ("deadline ahead", task(PENDING, **deadline(+0.001)), Run(1)),
    ("last attempt allowed", task(RUNNING, 2), Run(3)),
    ("one attempt allowed", task(PENDING, **policy(1)), Run(1)),
    (
        "cancel requested before it ran",
        task(PENDING, cancel_requested=True),
        Decision(Settle.ACK, cancel_event(1, "cancelled before it started")),
    ),
    (
        "cancel requested, its replica crashed",
        task(RUNNING, 1, cancel_requested=True),
        Decision(Settle.ACK, cancel_event(2, "cancelled before it started")),
    ),
    (
        "cancel wins over attempts used up",
        task(RUNNING, 3, cancel_requested=True),
        Decision(Settle.ACK, cancel_event(4, "cancelled before it started")),
    ),
    (
        "attempts used up by crashes",
        task(RUNNING, 3),
        Decision(Settle.ACK, max_attempts_event(4, 3), dead_letter=True),
    ),
    (
        "attempts used up, the task's own policy",
        task(WAITING, 1, **policy(1)),
        Decision(Settle.ACK, max_attempts_event(2, 1), dead_letter=True),
    ),
    (
        "attempts used up wins over the deadline",
        task(RUNNING, 3, **deadline(-1)),
        Decision(Settle.ACK, max_attempts_event(4, 3), dead_letter=True),
    ),
    (
        "deadline passed while it waited",
        task(PENDING, **deadline(-1)),
        Decision(Settle.ACK, deadline_event(1)),
    ),
    ("deadline is now", task(RUNNING, 1, **deadline(0)), Decision(Settle.ACK, deadline_event(2))),
]


@pytest.mark.parametrize(("case", "record", "expected"), BEGIN, ids=[c for c, _, _ in BEGIN])
def test_begin_attempt(case: str, record: resources_pb2.Task, expected: Run | Decision) -> None:
    assert begin_attempt(record, NOW) == expected


@pytest.mark.parametrize("state", [SUCCEEDED, FAILED, CANCELLED])
def test_begin_a_finished_task_announces_its_end_again(state: State) -> None:
    record = task(state, 2, end_time=timestamp(NOW - 3), cancel_requested=False)
    if state == SUCCEEDED:
        record.result.CopyFrom(value("r"))
    else:
        record.error.CopyFrom(task_status(grpc.StatusCode.UNKNOWN, "x", "X"))
    last = resources_pb2.TaskEvent(
        task=NAME, type=STOP, state=state, attempt=2, create_time=timestamp(NOW - 3)
    )
    if state == SUCCEEDED:
        last.payload.CopyFrom(value("r"))
    else:
        last.error.CopyFrom(record.error)
    assert begin_attempt(record, NOW) == Decision(Settle.ACK, last, republish=True)


# ------------------------------------------------------------------ end_attempt


def boom(attempt: int, message: str = "disk on fire", kind: str = "Boom") -> status_pb2.Status:
    return task_status(grpc.StatusCode.UNKNOWN, f"{kind}: {message}", kind)


def retry(attempt: int, delay: float, kind: str = "Boom") -> Decision:
    return Decision(
        Settle.NAK,
        event(PENDING, attempt, type=ATTEMPT_FAILED, error=boom(attempt, kind=kind)),
        delay=delay,
    )


def give_up(attempt: int, kind: str = "Boom") -> Decision:
    return Decision(
        Settle.ACK, event(FAILED, attempt, error=boom(attempt, kind=kind)), dead_letter=True
    )


def succeeded(attempt: int) -> Decision:
    return Decision(Settle.ACK, event(SUCCEEDED, attempt, payload=value("r")))


TIMEOUT_RETRIED: dict[str, Any] = {
    "retry_policy": resources_pb2.RetryPolicy(retryable_error_types=["Timeout"])
}
FAST: dict[str, Any] = {
    "retry_policy": resources_pb2.RetryPolicy(
        max_attempts=5, initial_backoff=duration(0.05), max_backoff=duration(0.1)
    )
}

END: list[tuple[str, resources_pb2.Task, int, Outcome, Decision]] = [
    ("result", task(RUNNING, 1), 1, Succeeded(value("r")), succeeded(1)),
    ("result on the last attempt", task(RUNNING, 3), 3, Succeeded(value("r")), succeeded(3)),
    ("failure", task(RUNNING, 1), 1, Failed("Boom", "disk on fire"), give_up(1)),
    (
        "retryable, attempt 1",
        task(RUNNING, 1),
        1,
        Failed("Boom", "disk on fire", True),
        retry(1, 1.0),
    ),
    (
        "retryable, attempt 2",
        task(RUNNING, 2),
        2,
        Failed("Boom", "disk on fire", True),
        retry(2, 2.0),
    ),
    (
        "retryable, last attempt",
        task(RUNNING, 3),
        3,
        Failed("Boom", "disk on fire", True),
        give_up(3),
    ),
    (
        "type retried by the policy",
        task(RUNNING, 1, **TIMEOUT_RETRIED),
        1,
        Failed("Timeout", "disk on fire"),
        retry(1, 1.0, "Timeout"),
    ),
    (
        "type not retried by the policy",
        task(RUNNING, 1, **TIMEOUT_RETRIED),
        1,
        Failed("Boom", "disk on fire"),
        give_up(1),
    ),
    (
        "custom backoff",
        task(RUNNING, 1, **FAST),
        1,
        Failed("Boom", "disk on fire", True),
        retry(1, 0.05),
    ),
    (
        "custom ceiling",
        task(RUNNING, 4, **FAST),
        4,
        Failed("Boom", "disk on fire", True),
        retry(4, 0.1),
    ),
    ("custom last", task(RUNNING, 5, **FAST), 5, Failed("Boom", "disk on fire", True), give_up(5)),
    (
        "only one attempt",
        task(RUNNING, 1, **policy(1)),
        1,
        Failed("Boom", "disk on fire", True),
        give_up(1),
    ),
    ("deadline", task(RUNNING, 2), 2, DeadlinePassed(), Decision(Settle.ACK, deadline_event(2))),
    (
        "cancelled",
        task(WAITING, 1, cancel_requested=True),
        1,
        Cancelled("changed my mind"),
        Decision(Settle.ACK, cancel_event(1, "changed my mind")),
    ),
    ("replica stopping", task(RUNNING, 1), 1, HandedBack(stopping=True), Decision(Settle.NAK)),
    (
        "replica's calls failed",
        task(RUNNING, 1),
        1,
        HandedBack(stopping=False),
        Decision(Settle.NAK, delay=1.0),
    ),
]


@pytest.mark.parametrize(
    ("case", "record", "attempt", "outcome", "expected"), END, ids=[c[0] for c in END]
)
def test_end_attempt(
    case: str, record: resources_pb2.Task, attempt: int, outcome: Outcome, expected: Decision
) -> None:
    assert end_attempt(record, attempt, outcome) == expected


def test_a_failure_is_a_typed_status() -> None:
    decision = end_attempt(task(RUNNING, 1), 1, Failed("Boom", "disk on fire"))
    assert decision.event is not None
    status = decision.event.error
    assert status_code(status) == grpc.StatusCode.UNKNOWN
    assert status.message == "Boom: disk on fire"
    assert error_type(status) == "Boom"


# Every state x every outcome: the decision's event applied to a task in that state.
# The cell is the state after it, "refused" (FailedPreconditionError), or "-" (no event).
OUTCOMES: dict[str, Outcome] = {
    "result": Succeeded(value("r")),
    "retryable": Failed("Boom", "x", retryable=True),
    "failure": Failed("Boom", "x"),
    "deadline": DeadlinePassed(),
    "cancel": Cancelled("stop"),
    "hand back": HandedBack(stopping=True),
}
AFTER = {
    #            result      retryable  failure   deadline  cancel      hand back
    "PENDING": ("refused", "PENDING", "FAILED", "FAILED", "CANCELLED", "-"),
    "RUNNING": ("SUCCEEDED", "PENDING", "FAILED", "FAILED", "CANCELLED", "-"),
    "WAITING": ("SUCCEEDED", "PENDING", "FAILED", "FAILED", "CANCELLED", "-"),
    "SUCCEEDED": ("refused", "refused", "refused", "refused", "refused", "-"),
    "FAILED": ("refused", "refused", "refused", "refused", "refused", "-"),
    "CANCELLED": ("refused", "refused", "refused", "refused", "refused", "-"),
}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("outcome", OUTCOMES)
def test_every_state_and_outcome(state: str, outcome: str) -> None:
    expected = AFTER[state][list(OUTCOMES).index(outcome)]
    # A PENDING task ends attempt 1 only if its RUNNING record never landed.
    record = task(STATES[state], attempt_count=0 if state == "PENDING" else 1)
    decision = end_attempt(record, 1, OUTCOMES[outcome])
    if decision.event is None:
        assert expected == "-"
        assert decision.settle is Settle.NAK
        return
    if expected == "refused":
        with pytest.raises(FailedPreconditionError, match=f"is {state}"):
            apply_event(record, decision.event)
        return
    assert apply_event(record, decision.event) is True
    assert lifecycle.state_name(record.state) == expected
    assert record.attempt_count == 1
    assert (decision.settle, decision.dead_letter) == {
        "SUCCEEDED": (Settle.ACK, False),
        "PENDING": (Settle.NAK, False),
        "FAILED": (Settle.ACK, outcome == "failure"),
        "CANCELLED": (Settle.ACK, False),
    }[expected]
