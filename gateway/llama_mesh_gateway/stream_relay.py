"""One server-streaming call relayed to an HTTP client, as SSE or NDJSON (streaming.py).

The response starts once the first message came or a heartbeat interval passed: an
upstream error that comes at once (NOT_FOUND, INVALID_ARGUMENT) gets its own HTTP
status; a later one ends the stream with an error event. A client that leaves
cancels the upstream call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from starlette.types import Receive, Send

from llama_mesh_gateway import asgi_io, streaming
from llama_mesh_gateway.metadata import response_headers
from llama_mesh_gateway.routes import Route
from llama_mesh_gateway.status import GatewayError, from_rpc_error
from llama_mesh_gateway.transcode import response_json

logger = logging.getLogger(__name__)


async def relay_stream(
    call: Any,
    route: Route,
    pool: descriptor_pool.DescriptorPool,
    headers: dict[str, str],
    heartbeat_seconds: float,
    cancelled: Callable[[], GatewayError],
    receive: Receive,
    send: Send,
) -> None:
    """Send the messages of `call` (a grpc.aio server-streaming call of `route`) to the
    client, framed as its `headers` ask; `cancelled()` is the error of a call the
    gateway cancelled. The call is cancelled when this returns."""
    frame = streaming.Frame(
        streaming.stream_format(headers.get("accept")),
        route.method_style.sse,
        route.style.error_format,
    )
    seq_path = streaming.sequence_path(route.method.output_type)
    it = call.__aiter__()
    first = asyncio.create_task(streaming.next_item(it))
    watcher = asyncio.create_task(asgi_io.wait_disconnect(receive))
    try:
        # Wait for the first item for up to one heartbeat: an upstream error that
        # comes at once (NOT_FOUND, INVALID_ARGUMENT) gets its own HTTP status.
        done, _ = await asyncio.wait(
            {first, watcher},
            timeout=heartbeat_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if watcher in done:
            raise asgi_io.Disconnected
        early = first.exception() if first in done else None
        if isinstance(early, grpc.aio.AioRpcError):
            raise from_rpc_error(early, pool)
        if isinstance(early, streaming.CallCancelled):
            raise cancelled()
        initial = await call.initial_metadata() if first in done and early is None else None
        out_headers = {
            "content-type": frame.media_type
            + ("; charset=utf-8" if frame.media_type == streaming.SSE else ""),
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
            **response_headers(initial),
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": asgi_io.raw_headers(out_headers),
            }
        )

        async def chunks() -> AsyncGenerator[bytes, None]:
            items = streaming.with_heartbeats(first, it, heartbeat_seconds)
            try:
                async for kind, item in items:
                    if kind == "heartbeat":
                        yield frame.heartbeat()
                    else:
                        value = response_json(route, item, pool)
                        yield frame.item(value, streaming.sequence_of(item, seq_path))
                end = frame.end()
                if end:
                    yield end
            except grpc.aio.AioRpcError as e:
                yield frame.error(from_rpc_error(e, pool))
            except streaming.CallCancelled:
                yield frame.error(cancelled())
            finally:
                await items.aclose()

        pump = asyncio.create_task(asgi_io.pump(chunks(), send))
        done, _ = await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if pump in done:
            pump.result()
        else:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            logger.debug("client left %s: upstream call cancelled", route.grpc_path)
    finally:
        call.cancel()
        for task in (first, watcher):
            if not task.done():
                task.cancel()
        await asyncio.gather(first, watcher, return_exceptions=True)
