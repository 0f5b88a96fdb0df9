"""A scripted OpenAI-compatible chat-completions server: the one fake the tests allow.

Real HTTP on 127.0.0.1 (port 0), the wire format of the OpenAI API as its Python SDK
parses it: ``POST /v1/chat/completions`` streaming (SSE ``chat.completion.chunk``
frames, usage in a last chunk when ``stream_options.include_usage`` is set,
``data: [DONE]``) and not, tool calls (several in one reply are parallel tool calls),
and ``GET /v1/models``. What it answers is scripted, and every request it received is
recorded, so a test can assert what the model saw.

    model = ScriptedModel()
    model.script(
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"})]),
        Reply("It is sunny in Paris."),
    )
    with model.serve_in_thread() as base_url:       # "http://127.0.0.1:PORT/v1"
        llm = OpenAILike(model="scripted", api_base=base_url, api_key="none", ...)
        ...
    assert model.requests[1].messages[-1]["role"] == "tool"

Replies are taken from the queue in order; once it is empty, ``respond_with(fn)``
answers (``fn(request) -> Reply``, sync or async); with neither, the request gets a
400 that names the request. ``Pause`` in a reply's chunks holds the stream at that
point until the test calls ``release()``, to observe a run mid-stream.

Token counts are what the reply says (``Reply(usage=Usage(10, 5))``) or, by default,
whitespace-separated words: the prompt's are the words of every message's text
content, the completion's those of the reply's text plus one per tool call.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llama_mesh.testing import chat_wire
from llama_mesh.testing.script import (
    Pause,
    RecordedRequest,
    Reply,
    Responder,
    counted_usage,
)

DEFAULT_MODEL = "scripted"


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status)


class ScriptedModel:
    """The script, the record of requests, and the HTTP server that serves them."""

    def __init__(self, model: str = DEFAULT_MODEL) -> None:
        self.model = model
        self._lock = threading.Lock()
        self._queue: list[Reply] = []
        self._responder: Responder | None = None
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._received = threading.Condition(self._lock)
        self._pauses: set[Pause] = set()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # ------------------------------------------------------------ scripting

    def script(self, *replies: Reply | str) -> ScriptedModel:
        """Queue replies (a string is a text reply), answered in order."""
        with self._lock:
            self._queue.extend(Reply(r) if isinstance(r, str) else r for r in replies)
        return self

    def respond_with(self, responder: Responder | None) -> ScriptedModel:
        """Answer with `responder(request)` once the queue is empty."""
        with self._lock:
            self._responder = responder
        return self

    @property
    def pending(self) -> int:
        """Scripted replies not yet sent."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every chat-completions request received so far, in order."""
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> list[RecordedRequest]:
        """Block until `count` requests arrived (TimeoutError after `timeout`)."""
        with self._received:
            if not self._received.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"{len(self._requests)} requests arrived, not {count}")
            return list(self._requests)

    # ------------------------------------------------------------ serving

    @contextlib.asynccontextmanager
    async def serve(self, port: int = 0) -> AsyncIterator[str]:
        """Serve on 127.0.0.1 (`port`, a free one by default) in this event loop; yield
        the base URL (``http://127.0.0.1:PORT/v1``)."""
        # IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only then.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        # Listening before uvicorn starts: connections wait in the backlog, so the URL
        # is usable at once.
        sock.listen(512)
        sock.setblocking(False)
        config = uvicorn.Config(
            self.app, lifespan="off", log_level="warning", access_log=False, ws="none"
        )
        server = _Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        finally:
            # uvicorn waits for responses in flight: let held streams finish.
            with self._lock:
                pauses, self._pauses = self._pauses, set()
            for pause in pauses:
                pause.release()
            server.should_exit = True
            try:
                await serving
            finally:
                sock.close()

    @contextlib.contextmanager
    def serve_in_thread(self) -> Iterator[str]:
        """`serve()` in a thread of its own (own event loop): usable from sync code and
        by tests whose own loop blocks, e.g. on a subprocess."""
        loop = asyncio.new_event_loop()
        url: list[str] = []
        started = threading.Event()
        stop = asyncio.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            try:
                async with self.serve() as base_url:
                    url.append(base_url)
                    started.set()
                    await stop.wait()
            except BaseException as err:
                failure.append(err)
                started.set()

        thread = threading.Thread(
            target=loop.run_until_complete, args=(main(),), name="scripted-model", daemon=True
        )
        thread.start()
        started.wait()
        try:
            if failure:
                raise failure[0]
            yield url[0]
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join()
            loop.close()

    # ------------------------------------------------------------ HTTP

    async def _models(self, request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": self.model, "object": "model", "created": 0, "owned_by": "llama-mesh"}
                ],
            }
        )

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            recorded = RecordedRequest(
                index=len(self._requests),
                method=request.method,
                path=request.url.path,
                headers=dict(request.headers),
                body=body,
                received_at=time.perf_counter(),
                peer=(request.client.host, request.client.port) if request.client else None,
            )
            self._requests.append(recorded)
            self._received.notify_all()
            reply = self._queue.pop(0) if self._queue else None
            responder = self._responder
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "the body must be a JSON object with a 'messages' list")
        if reply is None and responder is not None:
            produced = responder(recorded)
            reply = await produced if inspect.isawaitable(produced) else produced
        if reply is None:
            return _error(
                400, f"scripted model: no reply scripted for request #{recorded.index + 1}"
            )
        if reply.status != 200:
            return _error(reply.status, reply.error or f"scripted error {reply.status}")
        usage = reply.usage or counted_usage(recorded, reply)
        call_ids = [c.id or f"call_{next(self._ids)}" for c in reply.tool_calls]
        completion_id = f"chatcmpl-{next(self._ids)}"
        model = str(body.get("model") or self.model)
        if recorded.stream:
            options = body.get("stream_options") or {}
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            frames = chat_wire.chunks(
                recorded,
                reply,
                call_ids,
                completion_id,
                model,
                usage if include_usage else None,
                self._hold,
            )
            return StreamingResponse(
                frames,
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        return JSONResponse(chat_wire.completion(reply, call_ids, completion_id, model, usage))

    async def _hold(self, pause: Pause) -> None:
        with self._lock:
            self._pauses.add(pause)
        await pause.wait()


class _Server(uvicorn.Server):
    """uvicorn.Server that leaves signals to its embedder (tests, the bench)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
