"""Reading an ASGI request and writing a response: paths, headers, query, bodies, errors.

What the gateway's routes share below the transcoding: the raw path and query decoded
strictly (bad UTF-8 is a 400, not a 500), headers folded as HTTP folds them, a body's
Content-Type checked, and responses written with their length.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import parse_qsl, quote

import grpc
from starlette.types import Message, Receive, Scope, Send

from llama_mesh_gateway.status import GatewayError, error_body, invalid_argument, should_retry

JSON = "application/json"
# curl -d sends application/x-www-form-urlencoded; the body is still read as JSON.
BODY_TYPES = frozenset({"", JSON, "application/x-www-form-urlencoded"})


class Disconnected(Exception):
    """The HTTP client went away."""


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


async def wait_disconnect(receive: Receive) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return


async def until_disconnect(call: Any, receive: Receive) -> Any:
    """Await a unary call; cancel it and raise Disconnected if the client leaves first."""
    result = asyncio.ensure_future(call)
    watcher = asyncio.create_task(wait_disconnect(receive))
    try:
        done, _ = await asyncio.wait({result, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if result in done:
            return result.result()
        raise Disconnected
    finally:
        for task in (result, watcher):
            if not task.done():
                task.cancel()
        await asyncio.gather(result, watcher, return_exceptions=True)


async def pump(chunks: AsyncGenerator[bytes, None], send: Send) -> None:
    try:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await chunks.aclose()


def raw_path(scope: Scope) -> str:
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return quote(scope["path"], safe="/:@!$&'()*+,;=-._~")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_argument("path is not UTF-8") from None
    return text.split("?", 1)[0]


def request_headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        key = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def query_pairs(scope: Scope) -> list[tuple[str, str]]:
    raw: bytes = scope.get("query_string", b"")
    if not raw:
        return []
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise invalid_argument("query string is not UTF-8 once percent-decoded") from None


def check_content_type(value: str) -> None:
    media, _, params = value.partition(";")
    media = media.strip().lower()
    if media not in BODY_TYPES and not media.endswith("+json"):
        raise invalid_argument(
            f"unsupported Content-Type {value!r}: send the body as application/json", http=415
        )
    for param in params.split(";"):
        name, _, charset = param.partition("=")
        if name.strip().lower() == "charset" and charset.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise invalid_argument(f"unsupported charset in {value!r}: use utf-8", http=415)


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"request body is larger than the limit of {limit} bytes",
        http=413,
    )


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [
        (k.lower().encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers.items()
    ]


async def send_body(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    headers = {**headers, "content-length": str(len(body))}
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": raw_headers(headers),
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, error: GatewayError) -> None:
    headers = {
        "content-type": JSON,
        "x-should-retry": "true" if should_retry(error) else "false",
        **error.headers,
    }
    await send_body(send, error.http, headers, dumps(error_body(error, error.format)))


DIGITS = re.compile(r"[0-9]{1,19}")  # a header's number; str.isdigit() also takes "²"


async def read_body(receive: Receive, headers: dict[str, str], max_bytes: int) -> bytes:
    """The request's body; 413 (too_large) past `max_bytes`, declared or sent."""
    declared = headers.get("content-length")
    if declared is not None:
        if not DIGITS.fullmatch(declared.strip()):
            raise invalid_argument("header Content-Length is not a number")
        if int(declared) > max_bytes:
            raise too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise Disconnected
        chunk: bytes = msg.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        chunks.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks)
