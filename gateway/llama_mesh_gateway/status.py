"""gRPC status codes as HTTP statuses, and errors as `google.rpc.Status` JSON.

Every error the gateway returns, its own or the upstream's, is by default one JSON
object: `{"code": <gRPC code number>, "message": "...", "details": [<Any as JSON>, ...]}`.
The details come from the upstream's `grpc-status-details-bin` trailer. A service can
ask for another shape (`error_body`: FastAPI's `{"detail": ...}`, OpenAI's
`{"error": {...}}`); the HTTP status is the same in every shape. Messages
longer than `MAX_MESSAGE_BYTES` (UTF-8) are cut there and say so, so an error that
echoes a huge value back stays small.

>>> http_status(grpc.StatusCode.NOT_FOUND)
404
>>> GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "bad").to_json()
{'code': 3, 'message': 'bad', 'details': []}
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import DecodeError
from google.rpc import status_pb2  # type: ignore[import-untyped,unused-ignore]

from llama_mesh_gateway.options import ErrorFormat

logger = logging.getLogger(__name__)

#: The standard mapping (google/rpc/code.proto, grpc-gateway, Envoy).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

STATUS_DETAILS_KEY = "grpc-status-details-bin"
#: Longer error messages are truncated (gRPC servers should do the same: the message
#: travels in a trailer, and receivers refuse headers over 8 KiB).
MAX_MESSAGE_BYTES = 1024
_ELLIPSIS = "… (truncated)"


def truncate_message(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`message`, cut to at most `limit` UTF-8 bytes with a note saying it was cut.

    >>> truncate_message("x" * 2000, 20)
    'xxxx… (truncated)'
    """
    data = message.encode("utf-8", "replace")
    if len(data) <= limit:
        return message
    keep = limit - len(_ELLIPSIS.encode())
    return data[: max(keep, 0)].decode("utf-8", "ignore") + _ELLIPSIS


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status of a gRPC status code."""
    return HTTP_STATUS.get(code, 500)


def code_number(code: grpc.StatusCode) -> int:
    """The numeric value of a gRPC status code."""
    value: tuple[int, str] = code.value
    return value[0]


class GatewayError(Exception):
    """An error answered as a google.rpc.Status JSON body.

    `http` overrides the table for the gateway's own HTTP-only errors (405, 413, 415).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        details: Sequence[dict[str, Any]] = (),
        http: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        message = truncate_message(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)
        self.http = http if http is not None else http_status(code)
        self.headers = dict(headers or {})
        #: The shape of the body, set once the route (and so its service) is known.
        self.format = ErrorFormat.GOOGLE_RPC_STATUS

    def to_json(self) -> dict[str, Any]:
        """The google.rpc.Status JSON body."""
        return {"code": code_number(self.code), "message": self.message, "details": self.details}


#: Codes whose calls may be retried as they are (sent as `x-should-retry`, which
#: Stainless-generated clients such as openai and llama-stack-client obey; without it
#: they retry every 409 and 5xx, a non-idempotent create included).
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}
)

#: OpenAI's error `type` of each code (the rest are "server_error").
_OPENAI_TYPES = {
    grpc.StatusCode.CANCELLED: "invalid_request_error",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid_request_error",
    grpc.StatusCode.NOT_FOUND: "invalid_request_error",
    grpc.StatusCode.ALREADY_EXISTS: "invalid_request_error",
    grpc.StatusCode.FAILED_PRECONDITION: "invalid_request_error",
    grpc.StatusCode.OUT_OF_RANGE: "invalid_request_error",
    grpc.StatusCode.ABORTED: "invalid_request_error",
    grpc.StatusCode.PERMISSION_DENIED: "permission_error",
    grpc.StatusCode.UNAUTHENTICATED: "authentication_error",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "rate_limit_error",
}
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def should_retry(error: GatewayError) -> bool:
    """Whether the same request may succeed later (413 and 431 will not)."""
    return error.code in RETRYABLE and error.http not in (413, 431)


def openai_error(error: GatewayError) -> dict[str, Any]:
    """OpenAI's error object: `param` is the first BadRequest field violation's field,
    `code` the ErrorInfo reason (lower case) or else the gRPC code's name."""
    code = error.code.name.lower()
    param: str | None = None
    for detail in error.details:
        kind = detail.get("@type")
        if kind == _ERROR_INFO and detail.get("reason"):
            code = str(detail["reason"]).lower()
        elif kind == _BAD_REQUEST and param is None:
            violations = detail.get("fieldViolations") or [{}]
            param = violations[0].get("field") or None
    return {
        "message": error.message,
        "type": _OPENAI_TYPES.get(error.code, "server_error"),
        "param": param,
        "code": code,
    }


def error_body(error: GatewayError, fmt: ErrorFormat) -> dict[str, Any]:
    """The JSON body of an error response in a format."""
    if fmt is ErrorFormat.DETAIL:
        return {"detail": error.message}
    if fmt is ErrorFormat.OPENAI:
        return {"error": openai_error(error)}
    return error.to_json()


def stream_error(error: GatewayError, fmt: ErrorFormat) -> dict[str, Any]:
    """The data of the SSE event that ends a stream with an error, in a format."""
    if fmt is ErrorFormat.DETAIL:
        return {"error": {"message": error.message}}
    if fmt is ErrorFormat.OPENAI:
        return {"error": openai_error(error)}
    return error.to_json()


def invalid_argument(message: str, *, http: int | None = None) -> GatewayError:
    """A 400 (or `http`) INVALID_ARGUMENT error."""
    return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, message, http=http)


def any_to_json(item: any_pb2.Any, pool: DescriptorPool | None) -> dict[str, Any]:
    """An Any as proto3 JSON; an unknown type keeps its bytes as base64 `value`."""
    try:
        out: dict[str, Any] = json_format.MessageToDict(item, descriptor_pool=pool)
        return out
    except (TypeError, KeyError, json_format.Error):
        return {"@type": item.type_url, "value": base64.b64encode(item.value).decode()}


def from_rpc_error(error: grpc.aio.AioRpcError, pool: DescriptorPool | None) -> GatewayError:
    """The GatewayError of a failed upstream call, with its status details."""
    code = error.code()
    message = error.details() or ""
    details: list[dict[str, Any]] = []
    trailing: Any = error.trailing_metadata() or ()
    for key, value in trailing:
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:
            logger.warning("ignoring a malformed %s trailer", STATUS_DETAILS_KEY)
            continue
        details = [any_to_json(d, pool) for d in status.details]
        message = status.message or message
    return GatewayError(code, message, details=details)
