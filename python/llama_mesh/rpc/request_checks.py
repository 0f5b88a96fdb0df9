"""What every request is checked for before its servicer sees it.

Its bytes decode as the RPC's request message: grpc.aio answered bytes that do not
(corrupt, or JSON values nested deeper than protobuf's 100 levels) with UNKNOWN
"Unexpected <class 'DecodeError'>", before any interceptor could map it.

Its JSON values (google.protobuf.Struct / Value) hold only numbers JSON can write: a
NaN or an infinity in a task's input, an agent's tool default or a response's input
was stored, or failed deep inside a servicer as INTERNAL, and a stored one made every
later read through the gateway a 500. The servicers' own checks name the fields they
know; these cover every field of every RPC, so a new one cannot forget them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.json_values import check_finite
from llama_mesh.rpc import handlers
from llama_mesh.rpc.handlers import Context, Handler

# Why the call's request did not decode: grpc.aio decodes it in the call's own task,
# just before the behaviour runs, so the behaviour's check sees what the decoder saw.
_UNDECODABLE: ContextVar[str | None] = ContextVar("undecodable_request", default=None)


def _decoding(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`deserialize`, giving an empty request (and noting why) for bytes it refuses, so
    that the call reaches the check below instead of failing inside grpc.aio."""
    empty = getattr(deserialize, "__self__", None)  # the message class of FromString
    if empty is None:
        return deserialize

    def decode(data: bytes) -> Any:
        try:
            request = deserialize(data)
        except DecodeError as err:
            why = f"the request is not a valid {empty.DESCRIPTOR.full_name}: {err}"
            if "MaxDepth" in str(err):
                why += " (protobuf decodes 100 levels of messages; a JSON value takes 3 a level)"
            _UNDECODABLE.set(why)
            return empty()
        _UNDECODABLE.set(None)
        return request

    return decode


async def _check(request: Any, context: Context) -> None:
    undecodable = _UNDECODABLE.get()
    if undecodable is not None:
        raise InvalidArgumentError(undecodable)
    check_finite(request)


class RequestCheckInterceptor(grpc.aio.ServerInterceptor):
    """Refuses a request that does not decode, or holds a JSON number that is not
    finite: INVALID_ARGUMENT saying why (raised here, mapped by the ErrorInterceptor
    around it)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return handlers.before(
            handler, _check, request_deserializer=_decoding(handler.request_deserializer)
        )
