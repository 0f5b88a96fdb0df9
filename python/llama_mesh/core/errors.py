"""Every error llama-mesh raises, and how each maps to a gRPC status code.

    MeshError                       base of everything below
    ├── InvalidArgumentError        INVALID_ARGUMENT: the request is malformed
    ├── NotFoundError               NOT_FOUND: no such service, session or task
    ├── AlreadyExistsError          ALREADY_EXISTS
    ├── FailedPreconditionError     FAILED_PRECONDITION: not allowed in the current state
    ├── ResourceExhaustedError      RESOURCE_EXHAUSTED
    │   └── TokenBudgetExceededError    a session's token budget is used up
    ├── DeadlineExceededError       DEADLINE_EXCEEDED: the call ran out of time
    ├── UnavailableError            UNAVAILABLE: the control plane or NATS cannot be reached
    ├── UnauthenticatedError        UNAUTHENTICATED: no credentials, or not valid ones
    ├── PermissionDeniedError       PERMISSION_DENIED: the caller's roles do not allow it
    ├── UnimplementedError          UNIMPLEMENTED: a feature llama-mesh does not have
    ├── InternalError               INTERNAL / UNKNOWN: a bug; the message says where
    └── TaskError                   a task ended without a result (carries the Task)
        ├── TaskFailedError         FAILED: the workflow raised (error_type, message)
        │   ├── TaskDeadlineExceededError   FAILED with DEADLINE_EXCEEDED
        │   └── TaskResourceExhaustedError  FAILED with RESOURCE_EXHAUSTED (token budget)
        └── TaskCancelledError      CANCELLED

Workflow code raises ``RetryableError`` (or an error type named in the retry policy)
to have the attempt retried with backoff.

An error may name the request ``field`` at fault and a machine-readable ``reason``;
the server sends them as google.rpc.BadRequest and google.rpc.ErrorInfo details (the
REST gateway turns them into OpenAI's ``param`` and ``code``):

    raise InvalidArgumentError("agent_config.model is required", field="agent_config.model")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import grpc

from llama_mesh.core.tracebacks import remote_traceback

if TYPE_CHECKING:
    from llama_mesh.v1 import resources_pb2


class MeshError(Exception):
    """Base of every llama-mesh error."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, field: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        # The request field at fault (a BadRequest field violation), e.g. "model".
        self.field = field
        # A stable UPPER_SNAKE reason (an ErrorInfo), e.g. "RESPONSE_NOT_FOUND".
        self.reason = reason


class InvalidArgumentError(MeshError):
    """The request is malformed; the message says which field and why."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(MeshError):
    """The named service, session or task does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(MeshError):
    """A resource with that name exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(MeshError):
    """The request is not allowed in the resource's current state."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(MeshError):
    """A limit was reached."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class TokenBudgetExceededError(ResourceExhaustedError):
    """The session's token budget is used up; the message says how much was used."""


class DeadlineExceededError(MeshError):
    """The call ran out of time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnavailableError(MeshError):
    """The control plane or the message queue cannot be reached; retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class UnauthenticatedError(MeshError):
    """The call carries no credentials, or credentials that are not valid."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(MeshError):
    """The caller is known, but its roles do not allow the call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class UnimplementedError(MeshError):
    """The request asks for something llama-mesh does not do (yet)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(MeshError):
    """Something broke inside llama-mesh."""

    code = grpc.StatusCode.INTERNAL


class TaskError(MeshError):
    """A task ended without a result.

    When the workflow raised, ``traceback`` is where, on the replica that ran it (the
    google.rpc.DebugInfo of the task's error), and ``str()`` of the error shows it
    below the message.
    """

    def __init__(self, message: str, task: resources_pb2.Task) -> None:
        super().__init__(message)
        self.task = task

    @property
    def task_name(self) -> str:
        return self.task.name

    @property
    def traceback(self) -> str:
        """The remote traceback ('' when the task's error carries none)."""
        return remote_traceback(self.task.error) if self.task.HasField("error") else ""

    def __str__(self) -> str:
        remote = self.traceback
        if not remote:
            return self.message
        return f"{self.message}\n\nThe task's traceback, on its replica:\n{remote}"


class TaskFailedError(TaskError):
    """The task failed; ``error_type`` is the remote exception's type name."""

    def __init__(self, message: str, task: resources_pb2.Task, error_type: str) -> None:
        super().__init__(message, task)
        self.error_type = error_type


class TaskDeadlineExceededError(TaskFailedError, DeadlineExceededError):
    """The task did not finish before its deadline."""


class TaskResourceExhaustedError(TaskFailedError, ResourceExhaustedError):
    """The task failed because a limit was reached: its session's token budget."""


class TaskCancelledError(TaskError):
    """The task was cancelled."""

    code = grpc.StatusCode.CANCELLED


class RetryableError(Exception):
    """Raised by workflow code: this attempt failed, but another may succeed."""


_BY_CODE: dict[grpc.StatusCode, type[MeshError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def error_for_code(code: grpc.StatusCode, message: str) -> MeshError:
    """The MeshError a client raises for a failed call with this status code."""
    cls = _BY_CODE.get(code, MeshError)
    err = cls(message)
    if cls is MeshError:
        err.code = code  # type: ignore[misc]
    return err
