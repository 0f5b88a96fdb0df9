"""Server side of the error contract: MeshError -> gRPC status, in one interceptor.

Servicer methods raise MeshError subclasses; this interceptor turns them into the
status code and message the .proto comments promise. Anything else is a bug: it is
logged with its traceback and the caller gets INTERNAL with a short message, never
the traceback.

Messages are cut to `MAX_MESSAGE_BYTES`: the status message travels in the
`grpc-message` trailer, and a client refuses trailers over 8 KiB with
RESOURCE_EXHAUSTED, so an INVALID_ARGUMENT that echoes a huge id would otherwise
reach the caller as a different error.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from nats.errors import ConnectionClosedError, NoServersError
from nats.errors import TimeoutError as NatsTimeoutError

from llama_mesh.core.errors import MeshError
from llama_mesh.core.status import DOMAIN
from llama_mesh.rpc import handlers
from llama_mesh.rpc.handlers import Context, Handler, StreamBehaviour, UnaryBehaviour

logger = logging.getLogger(__name__)

_UNAVAILABLE = (NatsTimeoutError, ConnectionClosedError, NoServersError)
#: UTF-8 bytes of a status message; percent-encoded in the trailer, at most 3x that.
MAX_MESSAGE_BYTES = 1024
_TRUNCATED = "… (truncated)"


def bounded_message(message: str) -> str:
    """The message, cut to MAX_MESSAGE_BYTES with a note when it is longer."""
    data = message.encode("utf-8", "replace")
    if len(data) <= MAX_MESSAGE_BYTES:
        return message
    keep = MAX_MESSAGE_BYTES - len(_TRUNCATED.encode())
    return data[:keep].decode("utf-8", "ignore") + _TRUNCATED


def rich_status(err: MeshError) -> grpc.Status:
    """The status of `err` with its field (BadRequest) and reason (ErrorInfo) as details."""
    message = bounded_message(err.message)
    status = status_pb2.Status(code=err.code.value[0], message=message)
    if err.field:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=err.field, description=message
        )
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    if err.reason:
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN))
    return rpc_status.to_status(status)


async def _abort(context: Context, err: BaseException, method: str) -> None:
    if isinstance(err, MeshError):
        if err.field or err.reason:
            await context.abort_with_status(rich_status(err))
        await context.abort(err.code, bounded_message(err.message))
    if isinstance(err, _UNAVAILABLE):
        logger.warning("%s: message queue unavailable: %r", method, err)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "message queue unavailable; retry")
    logger.exception("%s failed", method, exc_info=err)
    await context.abort(
        grpc.StatusCode.INTERNAL, f"internal error in {method}: {type(err).__name__}"
    )


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions raised by servicers to gRPC statuses."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method

        def unary(inner: UnaryBehaviour) -> UnaryBehaviour:
            async def call(request: Any, context: Context) -> Any:
                try:
                    return await inner(request, context)
                except (grpc.aio.AbortError, grpc.RpcError):
                    raise
                except Exception as err:
                    await _abort(context, err, method)

            return call

        def stream(inner: StreamBehaviour) -> StreamBehaviour:
            async def call(request: Any, context: Context) -> AsyncIterator[Any]:
                try:
                    async for item in inner(request, context):
                        yield item
                except (grpc.aio.AbortError, grpc.RpcError):
                    raise
                except Exception as err:
                    await _abort(context, err, method)

            return call

        return handlers.wrap(handler, unary, stream)
