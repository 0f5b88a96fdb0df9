"""What every request is checked for before its servicer sees it.

Its JSON values (google.protobuf.Struct / Value) hold only numbers JSON can write: a
NaN or an infinity in a task's input, an agent's tool default or a response's input
was stored, or failed deep inside a servicer as INTERNAL, and a stored one made every
later read through the gateway a 500. The servicers' own checks name the fields they
know; this one covers every field of every RPC, so a new one cannot forget it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from llama_mesh.core.json_values import check_finite
from llama_mesh.rpc import handlers
from llama_mesh.rpc.handlers import Context, Handler, StreamBehaviour, UnaryBehaviour


class RequestCheckInterceptor(grpc.aio.ServerInterceptor):
    """Refuses a request holding a JSON number that is not finite: INVALID_ARGUMENT
    naming the field (raised here, mapped by the ErrorInterceptor around it)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler

        def unary(inner: UnaryBehaviour) -> UnaryBehaviour:
            async def call(request: Any, context: Context) -> Any:
                check_finite(request)
                return await inner(request, context)

            return call

        def stream(inner: StreamBehaviour) -> StreamBehaviour:
            async def call(request: Any, context: Context) -> AsyncIterator[Any]:
                check_finite(request)
                async for item in inner(request, context):
                    yield item

            return call

        return handlers.wrap(handler, unary, stream)
