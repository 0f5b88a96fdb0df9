"""How an attempt fails: the workflow's own exception (its type, message, code and
traceback become the task's error) as opposed to the mesh's own calls failing (the
task is handed back, not failed)."""

from __future__ import annotations

import grpc
import nats.errors

from llama_mesh.core.attempt_policy import Failed
from llama_mesh.core.errors import MeshError, RetryableError
from llama_mesh.core.tracebacks import debug_info
from llama_mesh.jetstream.outages import StoreOutageError
from llama_mesh.jetstream.remote_journal import JournalFailedError


class WorkflowFailed(Exception):
    """The workflow itself raised (as opposed to the mesh's own calls failing)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class ResultNotJson(Exception):
    """The workflow's result is no JSON value (a NaN, bytes): running it again gives
    the same result, so the task fails once, saying so."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def is_mesh_error(err: Exception) -> bool:
    """Errors of the mesh's own calls made while the workflow ran (e.g. event
    publishing during a failover, or a control plane that could not record it)."""
    return isinstance(err, nats.errors.Error | StoreOutageError | JournalFailedError)


# Frames of these packages above the workflow's own code are the runtime's plumbing:
# a remote traceback starts where the user's step does.
PLUMBING = ("llama_mesh.worker", "workflows", "llama_index_instrumentation", "asyncio")


def attempt_failure(err: Exception, tracebacks: bool) -> Failed:
    """How the workflow's exception fails the attempt: its type, its message (a mesh
    error's own, without the remote traceback its text adds), and where it was raised."""
    return Failed(
        type(err).__name__,
        err.message if isinstance(err, MeshError) else str(err),
        retryable=isinstance(err, RetryableError),
        # A mesh error (a token budget used up...) fails the task with its code.
        code=err.code if isinstance(err, MeshError) else grpc.StatusCode.UNKNOWN,
        debug=debug_info(err, PLUMBING) if tracebacks else None,
    )
