"""The behaviours of a grpc.aio method handler, typed as grpc.aio calls them.

The grpcio stubs type `grpc.RpcMethodHandler` for the synchronous server: a unary
behaviour returns its response and a streaming one an Iterator. Under grpc.aio they
are a coroutine function and an async generator function; the interceptors read and
wrap them through these types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, cast

import grpc

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
UnaryBehaviour: TypeAlias = Callable[[Any, Context], Awaitable[Any]]
StreamBehaviour: TypeAlias = Callable[[Any, Context], AsyncIterator[Any]]


def unary_unary(handler: Handler) -> UnaryBehaviour | None:
    return cast("UnaryBehaviour | None", handler.unary_unary)


def unary_stream(handler: Handler) -> StreamBehaviour | None:
    return cast("StreamBehaviour | None", handler.unary_stream)
