"""Counts every gRPC call a server answers, by method and status code, and times it.

The outermost interceptor: it sees the code a caller gets, whether the call was
refused by authentication, failed in the servicer (the error interceptor's mapping)
or was cancelled by the caller. It counts when the call is done (the context's done
callback), so a stream is timed to its end.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
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

        async def watch(request: Any, context: Context) -> None:
            _watch(context, method)

        return handlers.before(handler, watch)
