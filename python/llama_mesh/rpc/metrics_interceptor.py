"""Counts every gRPC call a server answers, by method and status code, and times it.

The outermost interceptor: it sees the code a caller gets, whether the call was
refused by authentication, failed in the servicer (the error interceptor's mapping)
or was cancelled by the caller. It counts when the call is done (the context's done
callback), so a stream is timed to its end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from llama_mesh.rpc import handlers
from llama_mesh.rpc.handlers import Context, Handler
from llama_mesh.telemetry.metrics import RPC_DURATION, RPCS


def _watch(context: Context, method: str) -> None:
    started = time.perf_counter()

    def done(_: Any) -> None:
        code = context.code()
        if code is None:
            code = grpc.StatusCode.CANCELLED if context.cancelled() else grpc.StatusCode.OK
        name = code.name if isinstance(code, grpc.StatusCode) else grpc.StatusCode(code).name
        RPCS.labels(method, name).inc()
        RPC_DURATION.labels(method).observe(time.perf_counter() - started)

    # types-grpcio declares the callback as a class no function matches.
    context.add_done_callback(done)  # type: ignore[arg-type]


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts the calls of unary and server-streaming methods (the mesh has no others)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        inner_uu = handlers.unary_unary(handler)
        if inner_uu is not None:

            async def unary_unary(request: Any, context: Context) -> Any:
                _watch(context, method)
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        inner_us = handlers.unary_stream(handler)
        if inner_us is not None:

            async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
                _watch(context, method)
                async for item in inner_us(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
