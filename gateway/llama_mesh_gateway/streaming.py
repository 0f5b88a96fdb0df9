"""Server streaming over HTTP: Server-Sent Events (default) or NDJSON.

SSE (`text/event-stream`), one event per streamed message:

    id: <sequence>
    data: <the message as JSON>

`id:` is present when the streamed message has an integer field named `sequence`, at
the top level or inside one of its message fields (StreamTaskEventsResponse.event.
sequence). A reconnecting EventSource sends it back as `Last-Event-ID`, which the
gateway maps to the request field `after_sequence` when the request has one, so the
stream resumes with no gap and no repeat. An upstream error ends the stream with
`event: error` and a google.rpc.Status JSON `data:`. Idle streams get a `: keep-alive`
comment every heartbeat interval.

A method's `SseFraming` option changes the SSE framing: no `id:` lines
(`omit_ids`), an `event:` line named after a key of each message's JSON
(`event_key`), a final `data: [DONE]` after a stream that ended well
(`done_sentinel`). The service's error format shapes the error event: with the
DETAIL and OPENAI formats it is a plain `data:` event holding `{"error": {...}}`,
which llama-stack-client and the openai SDK both read.

NDJSON (`Accept: application/x-ndjson`), one line per message, as grpc-gateway does:
`{"result": <message>}`, and a final `{"error": <Status>}` line on an upstream error.
Heartbeats are empty lines, which NDJSON readers skip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import message
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from llama_mesh_gateway.options import ErrorFormat, SseFraming
from llama_mesh_gateway.status import GatewayError, stream_error

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
_INT_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_SFIXED64,
        FieldDescriptor.TYPE_SFIXED32,
    }
)
RESUME_FIELD = "after_sequence"


def stream_format(accept: str | None) -> str:
    """NDJSON if the client asks for it, else SSE."""
    if accept and any(
        part.split(";")[0].strip().lower() in (NDJSON, "application/jsonl")
        for part in accept.split(",")
    ):
        return NDJSON
    return SSE


def _is_int(field: FieldDescriptor) -> bool:
    return field.type in _INT_TYPES and not field.is_repeated


def sequence_path(desc: Descriptor) -> tuple[str, ...] | None:
    """Where a message's `sequence` is: top level, or one message field deep."""
    top = desc.fields_by_name.get("sequence")
    if top is not None and _is_int(top):
        return ("sequence",)
    for field in desc.fields:
        if field.message_type is None or field.is_repeated:
            continue
        inner = field.message_type.fields_by_name.get("sequence")
        if inner is not None and _is_int(inner):
            return (field.name, "sequence")
    return None


def resume_field(desc: Descriptor) -> str | None:
    """The request field that `Last-Event-ID` sets, if the request has one."""
    field = desc.fields_by_name.get(RESUME_FIELD)
    return RESUME_FIELD if field is not None and _is_int(field) else None


def sequence_of(msg: message.Message, path: tuple[str, ...] | None) -> int | None:
    """The sequence of a streamed message, or None."""
    if path is None:
        return None
    current: Any = msg
    for name in path[:-1]:
        if not current.HasField(name):
            return None
        current = getattr(current, name)
    value: int = getattr(current, path[-1])
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Frame:
    """How one stream format writes items, errors and heartbeats."""

    media_type: str
    framing: SseFraming = dataclasses.field(default_factory=SseFraming)
    error_format: ErrorFormat = ErrorFormat.GOOGLE_RPC_STATUS

    def item(self, value: Any, sequence: int | None) -> bytes:
        """One streamed message."""
        if self.media_type == NDJSON:
            return (_dumps({"result": value}) + "\n").encode()
        head = ""
        if sequence is not None and not self.framing.omit_ids:
            head = f"id: {sequence}\n"
        if self.framing.event_key and isinstance(value, dict):
            name = value.get(self.framing.event_key)
            if isinstance(name, str) and name and "\n" not in name and "\r" not in name:
                head += f"event: {name}\n"
        return f"{head}data: {_dumps(value)}\n\n".encode()

    def error(self, error: GatewayError) -> bytes:
        """The final error item."""
        if self.media_type == NDJSON:
            return (_dumps({"error": error.to_json()}) + "\n").encode()
        if self.error_format is ErrorFormat.GOOGLE_RPC_STATUS:
            return f"event: error\ndata: {_dumps(error.to_json())}\n\n".encode()
        return f"data: {_dumps(stream_error(error, self.error_format))}\n\n".encode()

    def end(self) -> bytes:
        """What follows the last item of a stream that ended without error."""
        if self.media_type == SSE and self.framing.done_sentinel:
            return b"data: [DONE]\n\n"
        return b""

    def heartbeat(self) -> bytes:
        """Keeps an idle connection open through proxies."""
        return b"\n" if self.media_type == NDJSON else b": keep-alive\n\n"


class CallCancelled(Exception):
    """The upstream call was cancelled by the gateway (grpc.aio raises CancelledError)."""


async def next_item(it: AsyncIterator[Any]) -> Any:
    """The next item of an async iterator (a coroutine, for asyncio.create_task).

    A grpc.aio call cancelled by its owner raises CancelledError from its reads; that
    becomes CallCancelled so it is not mistaken for the cancellation of this task.
    """
    try:
        return await anext(it)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise CallCancelled from None


async def with_heartbeats(
    first: asyncio.Task[Any], it: AsyncIterator[Any], interval: float
) -> AsyncGenerator[tuple[str, Any], None]:
    """("item", x) for each item, ("heartbeat", None) while the stream is idle.

    `first` is the already started fetch of the first item. Ends when the iterator
    ends; an exception of the iterator is raised to the caller. The reading is
    cancelled if the consumer stops early.

    One task reads the whole stream, at most one item ahead of the consumer, and one
    timer ticks every interval: a tick that finds no item since the one before and
    none waiting yields a heartbeat, so an idle stream gets one each interval, the
    first 1-2 intervals after its last item. (A task and a timed wait per item were
    ~6% of the gateway's CPU on a streamed agent turn.)
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1)
    quiet = True  # no item since the last tick

    async def read() -> None:
        nonlocal quiet
        try:
            item = await first
            while True:
                await ready.put(("item", item))
                quiet = False
                item = await next_item(it)
        except StopAsyncIteration:
            await ready.put(("end", None))
        except Exception as error:  # the caller's to handle (an upstream error)
            await ready.put(("error", error))

    timer: asyncio.TimerHandle

    def tick() -> None:
        nonlocal quiet, timer
        if quiet and ready.empty():
            ready.put_nowait(("heartbeat", None))
        quiet = True
        timer = loop.call_later(interval, tick)

    reader = asyncio.create_task(read())
    timer = loop.call_later(interval, tick)
    try:
        while True:
            kind, item = await ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield (kind, item)
    finally:
        timer.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
