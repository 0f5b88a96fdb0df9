"""The OpenAI client of the mesh's models: the SDK's, sending chat messages as they are.

Before each request the OpenAI SDK walks its body through the parameters' TypedDict
annotations (``openai._utils._transform``) to rename aliased keys and format dates
and files. Chat message parameters have neither, so the walk returns the messages
unchanged, yet it costs a fraction of a millisecond per message on every call: an
agent sends its whole conversation each time, so the 100th turn of a session paid
for 200 messages (tens of milliseconds of the replica's CPU) where the first paid for
two. Here the messages that are plain JSON (what llama-index sends) go in the body as
they are, through the SDK's documented ``extra_body``; the request is the same bytes.

A streamed answer ends with ``data: [DONE]``, where the SDK stops reading and closes
the response: the rest of the body (the chunked encoding's last chunk) is left
unread, so httpx closes the connection and every call opened a new one. Here the
``[DONE]`` event is handed to the SDK once the body is read to its end (a well-formed
server ends it right after), and the connection goes back to the pool. A server that
keeps the body open after ``[DONE]`` is waited for a moment only (``DRAIN_SECONDS``);
then its connection is closed, as the SDK would.

Each answer, and each chunk of a streamed one, the SDK builds with its lenient
``construct_type``, a walk in Python over the type's annotations: ~90 us a chunk, on
the way of every token. Here a chat completion (or chunk) is validated by pydantic
first, the SDK's strict mode (~5 us, the same object); one that does not validate (an
OpenAI-compatible server that leaves out a field) is built the SDK's lenient way.

    llm = OpenAILike(..., async_openai_client=ModelClient(api_key=..., base_url=...))
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
import openai
import pydantic
from openai import AsyncOpenAI
from openai._models import validate_type
from openai._streaming import ServerSentEvent, SSEBytesDecoder, SSEDecoder
from openai.resources.chat import AsyncChat, AsyncCompletions
from openai.types.chat import ChatCompletion, ChatCompletionChunk

_JSON_SCALARS = (str, int, float, bool, type(None))
# The answers validated before the SDK builds them its own way (see above).
_VALIDATED = (ChatCompletion, ChatCompletionChunk)


def _is_json(value: Any) -> bool:
    """Plain JSON: dicts with string keys, lists, and scalars (nothing to transform)."""
    if isinstance(value, _JSON_SCALARS):
        return True
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    return False


class _Completions(AsyncCompletions):
    async def create(  # type: ignore[override]
        self,
        *,
        messages: Iterable[Any],
        extra_body: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        sent = list(messages)
        try:
            if not _is_json(sent) or (extra_body and "messages" in extra_body):
                return await super().create(messages=sent, extra_body=extra_body, **kwargs)
            # extra_body is merged over the transformed body: `messages` ends up as given.
            body = {**(extra_body or {}), "messages": sent}
            return await super().create(messages=[], extra_body=body, **kwargs)
        except openai.APIConnectionError as e:
            if type(e) is not openai.APIConnectionError:
                raise  # a timeout says so itself
            # The SDK says only "Connection error.": the task's error names the endpoint,
            # and what failed (httpx's error) in its message. Printed alone (from None):
            # a failed task's traceback showed the chain under it too, httpcore's
            # frames to the SDK's "Connection error." (it stays its __context__).
            cause = f" ({e.__cause__})" if e.__cause__ else ""
            raise openai.APIConnectionError(
                message=f"cannot connect to the model at {self._client.base_url}{cause}: "
                "is its server running?",
                request=e.request,
            ) from None


class _Chat(AsyncChat):
    @functools.cached_property
    def completions(self) -> AsyncCompletions:
        return _Completions(self._client)


DRAIN_SECONDS = 0.25  # how long the body's end is waited for after [DONE]


class _ReadToEnd(SSEDecoder):
    """Server-sent events, `[DONE]` given once the body has been read to its end."""

    async def aiter_bytes(self, iterator: AsyncIterator[bytes]) -> AsyncIterator[ServerSentEvent]:
        events = super().aiter_bytes(iterator)
        async for sse in events:
            if not sse.data.startswith("[DONE]"):
                yield sse
                continue
            # Nothing after [DONE] is read by the SDK: read it only to reach the end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_SECONDS):
                    async for _ in events:
                        pass
            yield sse
            return


class ModelClient(AsyncOpenAI):
    """AsyncOpenAI whose chat completions send plain-JSON messages untransformed, and
    whose streamed answers leave their connection open for the next call."""

    @functools.cached_property
    def chat(self) -> AsyncChat:
        return _Chat(self)

    def _make_sse_decoder(self) -> SSEDecoder | SSEBytesDecoder:
        return _ReadToEnd()

    def _process_response_data(
        self, *, data: object, cast_to: type[Any], response: httpx.Response
    ) -> Any:
        if cast_to in _VALIDATED and data is not None:
            with contextlib.suppress(pydantic.ValidationError):
                return validate_type(type_=cast_to, value=data)
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)
