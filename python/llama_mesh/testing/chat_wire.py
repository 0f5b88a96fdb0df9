"""The OpenAI chat-completions wire format of a scripted reply: one JSON body, or SSE chunks.

What the OpenAI Python SDK parses: ``chat.completion`` bodies, ``chat.completion.chunk``
frames (the role first, text pieces, each tool call's name then its arguments in two
parts, the finish reason, usage in a last chunk when asked for) and ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from llama_mesh.testing.script import Pause, RecordedRequest, Reply, Usage


def finish_reason(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def completion(
    reply: Reply,
    call_ids: list[str],
    completion_id: str,
    model: str,
    usage: Usage,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.content(),
        "refusal": None,
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for call, call_id in zip(reply.tool_calls, call_ids, strict=True)
        ]
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(reply),
            }
        ],
        "usage": usage.to_json(),
    }


async def chunks(
    recorded: RecordedRequest,
    reply: Reply,
    call_ids: list[str],
    completion_id: str,
    model: str,
    usage: Usage | None,
    hold: Callable[[Pause], Awaitable[None]],
) -> AsyncIterator[bytes]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        frame: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if usage is not None:
            frame["usage"] = None
        return sse(frame)

    first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
    if reply.content() is None and reply.tool_calls:
        first["content"] = None
    yield chunk(first)
    for piece in reply.pieces():
        if not isinstance(piece, str):
            await hold(piece)
            continue
        if reply.interval and recorded.chunk_times:
            # The pace of a generating model, not a wait for something to happen.
            await asyncio.sleep(reply.interval)
        recorded.chunk_times.append(time.perf_counter())
        yield chunk({"content": piece})
    for index, (call, call_id) in enumerate(zip(reply.tool_calls, call_ids, strict=True)):
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ]
            }
        )
        arguments = call.arguments_json
        middle = len(arguments) // 2
        for part in (arguments[:middle], arguments[middle:]):
            if part:
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
    yield chunk({}, finish_reason(reply))
    if usage is not None:
        yield sse(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": None,
                "choices": [],
                "usage": usage.to_json(),
            }
        )
    yield b"data: [DONE]\n\n"


def sse(frame: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(frame, separators=(",", ":")).encode() + b"\n\n"
