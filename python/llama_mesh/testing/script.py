"""The scripted model's script: the replies it is told to give (Reply, ToolCall,
Usage, Pause) and the requests it records (RecordedRequest).

No HTTP here: scripted_model.py serves these, chat_wire.py writes them in the
OpenAI wire format.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class Pause:
    """A point in a streamed reply where the server waits until ``release()``.

    Thread-safe: the server may run in another thread (``serve_in_thread``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._released = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.reached = threading.Event()

    def release(self) -> None:
        with self._lock:
            self._released = True
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._released:
                return
            self._waiters.append((loop, future))
        self.reached.set()
        await future


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True)
class Usage:
    """Token counts reported for one reply."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class ToolCall:
    """A function call the model makes; ``id`` defaults to ``call_<n>``."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``text`` is the assistant's content; streamed, it goes out in ``chunks`` (default:
    one chunk per word with its trailing space), ``interval`` seconds apart (a model
    generating tokens at its pace; 0: back to back). ``Pause`` objects among the chunks
    hold the stream there. ``status`` other than 200 makes it an error response with
    ``error`` as the message.
    """

    text: str | None = None
    tool_calls: Sequence[ToolCall] = ()
    chunks: Sequence[str | Pause] | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    status: int = 200
    error: str = ""
    interval: float = 0.0

    @classmethod
    def failure(cls, status: int, message: str) -> Reply:
        """An HTTP error with OpenAI's error body."""
        return cls(status=status, error=message)

    def pieces(self) -> list[str | Pause]:
        if self.chunks is not None:
            return list(self.chunks)
        return list(re.findall(r"\S+\s*|\s+", self.text or ""))

    def content(self) -> str | None:
        if self.chunks is not None:
            return "".join(c for c in self.chunks if isinstance(c, str))
        return self.text


@dataclass
class RecordedRequest:
    """A request the server received, and when it sent each streamed text chunk."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float
    # time.perf_counter() right before each text chunk was written (streaming only).
    chunk_times: list[float] = field(default_factory=list)
    # The client's (host, port): requests sent on one kept-alive connection share it.
    peer: tuple[str, int] | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of the request, as sent."""
        if isinstance(self.body, dict) and isinstance(self.body.get("messages"), list):
            return list(self.body["messages"])
        return []

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and bool(self.body.get("stream"))

    def texts(self) -> list[str]:
        """Each message's text content (text parts joined), in order."""
        return [_text_of(m.get("content")) for m in self.messages]


Responder = Callable[[RecordedRequest], "Reply | Awaitable[Reply]"]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _words(text: str) -> int:
    return len(text.split())


def counted_usage(request: RecordedRequest, reply: Reply) -> Usage:
    """The default token counts: whitespace-separated words of the prompt's text, and
    of the reply's text plus one per tool call."""
    prompt = sum(_words(t) for t in request.texts())
    completion = _words(reply.content() or "") + len(reply.tool_calls)
    return Usage(prompt, completion)
