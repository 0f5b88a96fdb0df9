"""google.rpc.Status values for task errors, built in one place.

A task's error carries the exception's type in a google.rpc.ErrorInfo detail
(`reason` = type name, `domain` = "llama-mesh"), so every language can read it, and
where the workflow raised it in a google.rpc.DebugInfo (core/tracebacks.py).
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from llama_mesh.core.limits import cut

DOMAIN = "llama-mesh"


def task_status(
    code: grpc.StatusCode,
    message: str,
    error_type: str = "",
    debug: error_details_pb2.DebugInfo | None = None,
) -> status_pb2.Status:
    # Cut: the status lives in the task's record, which must fit in one NATS message.
    status = status_pb2.Status(code=code.value[0], message=cut(message))
    if error_type:
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=error_type, domain=DOMAIN))
    if debug is not None:
        status.details.add().Pack(debug)
    return status


def error_text(error_type: str, message: str) -> str:
    """`KeyError: 'missing_key'`; the type alone when the message is empty, the message
    alone when it starts with the type already (never `ValueError: ValueError: …`)."""
    if not message:
        return error_type
    if not error_type or message.startswith(f"{error_type}:"):
        return message
    return f"{error_type}: {message}"


def error_type(status: status_pb2.Status) -> str:
    """The exception type name a task error carries, or ''."""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == DOMAIN:
            return str(info.reason)
    return ""


def status_code(status: status_pb2.Status) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == status.code:
            return code
    return grpc.StatusCode.UNKNOWN
