"""The behaviours of a grpc.aio method handler, typed as grpc.aio calls them.

The grpcio stubs type `grpc.RpcMethodHandler` for the synchronous server: a unary
behaviour returns its response and a streaming one an Iterator. Under grpc.aio they
are a coroutine function and an async generator function; the interceptors read and
wrap them through these types.
"""

from __future__ import annotations

import inspect
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
    behaviour = handler.unary_stream
    if behaviour is None or not inspect.iscoroutinefunction(behaviour):
        return cast("StreamBehaviour | None", behaviour)
    # grpc.aio also takes a coroutine that sends with context.write() (the health
    # servicer's Watch); as an async generator that yields nothing, the interceptors'
    # `async for` wraps it too (it failed with INTERNAL: TypeError).
    writes = cast("Callable[[Any, Context], Awaitable[None]]", behaviour)

    async def written(request: Any, context: Context) -> AsyncIterator[Any]:
        await writes(request, context)
        nothing: tuple[Any, ...] = ()
        for item in nothing:
            yield item

    return written


def wrap(
    handler: Handler,
    unary: Callable[[UnaryBehaviour], UnaryBehaviour],
    stream: Callable[[StreamBehaviour], StreamBehaviour],
    *,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> Handler:
    """`handler` with its behaviour replaced by `unary(behaviour)` or
    `stream(behaviour)`, and the same (de)serializers unless `request_deserializer`
    replaces its own. A handler of streaming requests is returned as it is: no RPC of
    the mesh has one."""
    deserialize = request_deserializer or handler.request_deserializer
    inner_uu = unary_unary(handler)
    if inner_uu is not None:
        return grpc.unary_unary_rpc_method_handler(
            unary(inner_uu),
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )
    inner_us = unary_stream(handler)
    if inner_us is not None:
        return grpc.unary_stream_rpc_method_handler(
            stream(inner_us),
            request_deserializer=deserialize,
            response_serializer=handler.response_serializer,
        )
    return handler


def before(
    handler: Handler,
    check: Callable[[Any, Context], Awaitable[None]],
    *,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> Handler:
    """`handler`, with `check(request, context)` awaited first (in the call's own task,
    so context variables it sets are the behaviour's)."""

    def unary(inner: UnaryBehaviour) -> UnaryBehaviour:
        async def call(request: Any, context: Context) -> Any:
            await check(request, context)
            return await inner(request, context)

        return call

    def stream(inner: StreamBehaviour) -> StreamBehaviour:
        async def call(request: Any, context: Context) -> AsyncIterator[Any]:
            await check(request, context)
            async for item in inner(request, context):
                yield item

        return call

    return wrap(handler, unary, stream, request_deserializer=request_deserializer)
