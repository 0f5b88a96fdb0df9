"""The scripted model server speaks OpenAI's wire format as the official SDK and
llama-index's OpenAILike parse it, and records what it was sent."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from llama_index.core.llms import ChatMessage
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai_like import OpenAILike

from llama_mesh.testing import Pause, Reply, ScriptedModel, ToolCall, Usage


def _client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0)


async def test_a_plain_reply_and_what_the_model_saw() -> None:
    model = ScriptedModel().script(Reply("Hello there", usage=Usage(7, 2)))
    async with model.serve() as url, _client(url) as client:
        completion = await client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "hi you"}]
        )
    assert completion.choices[0].message.content == "Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "m1"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 2)
    [request] = model.requests
    assert request.path == "/v1/chat/completions"
    assert request.messages == [{"role": "user", "content": "hi you"}]
    assert request.headers["authorization"] == "Bearer none"


async def test_streaming_chunks_in_order_with_usage_last_and_done() -> None:
    model = ScriptedModel().script(Reply(chunks=["Hel", "lo ", "world"]))
    async with model.serve() as url, httpx.AsyncClient() as http:
        response = await http.post(
            f"{url}/chat/completions",
            json={
                "model": "m",
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "one two three"}],
            },
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in response.text.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    texts = [c["choices"][0]["delta"].get("content") for c in chunks[1:4]]
    assert texts == ["Hel", "lo ", "world"]
    assert chunks[4]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    # Default counts: words of the prompt, words of the reply.
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert len(model.requests[0].chunk_times) == 3


async def test_the_sdk_streams_text_and_usage() -> None:
    model = ScriptedModel().script(Reply("a b c"))
    async with model.serve() as url, _client(url) as client:
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
    assert text == "a b c"
    assert usage is not None and usage.completion_tokens == 3


async def test_parallel_tool_calls_streamed_and_not() -> None:
    calls = [ToolCall("add", {"a": 1, "b": 2}), ToolCall("mul", {"a": 3, "b": 4}, id="c2")]
    model = ScriptedModel().script(Reply(tool_calls=calls), Reply(tool_calls=calls))
    async with model.serve() as url, _client(url) as client:
        whole = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        parts: dict[int, dict[str, str]] = {}
        finish = None
        async for chunk in stream:
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                entry = parts.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += delta.id or ""
                assert delta.function is not None
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
    message = whole.choices[0].message
    assert whole.choices[0].finish_reason == "tool_calls"
    assert message.content is None
    assert message.tool_calls is not None
    got = [(c.function.name, json.loads(c.function.arguments), c.id) for c in message.tool_calls]  # type: ignore[union-attr]
    assert got[0][:2] == ("add", {"a": 1, "b": 2})
    assert got[1] == ("mul", {"a": 3, "b": 4}, "c2")
    assert finish == "tool_calls"
    assert [(p["name"], json.loads(p["arguments"])) for p in parts.values()] == [
        ("add", {"a": 1, "b": 2}),
        ("mul", {"a": 3, "b": 4}),
    ]
    assert parts[1]["id"] == "c2"


async def test_llama_index_openai_like_reads_tool_calls_and_usage() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    model = ScriptedModel().script(
        Reply(tool_calls=[ToolCall("add", {"a": 1, "b": 2})], usage=Usage(11, 4)), Reply("3")
    )
    # Our own HTTP client, closed by the block: the LLM's own one would be left open.
    async with model.serve() as url, httpx.AsyncClient() as http:
        llm = OpenAILike(
            model="scripted",
            api_base=url,
            api_key="none",
            async_http_client=http,
            is_chat_model=True,
            is_function_calling_model=True,
            additional_kwargs={"stream_options": {"include_usage": True}},
        )
        tool = FunctionTool.from_defaults(add)
        stream = await llm.astream_chat_with_tools([tool], user_msg="add 1 and 2")
        responses = [r async for r in stream]
        last = responses[-1]
        [selection] = llm.get_tool_calls_from_response(last)
        response = await llm.achat([ChatMessage(role="user", content="again")])
    assert (selection.tool_name, selection.tool_kwargs) == ("add", {"a": 1, "b": 2})
    assert last.additional_kwargs["prompt_tokens"] == 11
    assert response.message.content == "3"
    # The non-streaming call must not carry stream_options.
    assert "stream_options" not in model.requests[1].body
    assert model.requests[0].body["tools"][0]["function"]["name"] == "add"


async def test_a_pause_holds_the_stream_until_released() -> None:
    pause = Pause()
    model = ScriptedModel().script(Reply(chunks=["a", "b", pause, "c"]))
    async with model.serve() as url, _client(url) as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        received: list[str] = []
        async for chunk in stream:
            content = chunk.choices[0].delta.content if chunk.choices else None
            if content:
                received.append(content)
            if received == ["a", "b"]:
                # Nothing more comes until the test lets it.
                assert pause.reached.is_set()
                assert len(model.requests[0].chunk_times) == 2
                pause.release()
    assert received == ["a", "b", "c"]


async def test_a_function_answers_once_the_queue_is_empty() -> None:
    async def echo(request: object) -> Reply:
        await asyncio.sleep(0)
        texts = request.texts()  # type: ignore[attr-defined]
        return Reply(f"ECHO({len(texts)}): {texts[-1]}")

    model = ScriptedModel().script("first").respond_with(echo)
    async with model.serve() as url, _client(url) as client:
        one = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
        two = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hello"}]
        )
    assert one.choices[0].message.content == "first"
    assert two.choices[0].message.content == "ECHO(1): hello"


async def test_errors_are_openai_errors() -> None:
    model = ScriptedModel().script(Reply.failure(429, "slow down"))
    async with model.serve() as url, _client(url) as client:
        with pytest.raises(openai.RateLimitError, match="slow down"):
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
        # An unscripted request is a 400 that names it, never a hang.
        with pytest.raises(openai.BadRequestError, match="no reply scripted for request #2"):
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
        async with httpx.AsyncClient() as http:
            bad = await http.post(f"{url}/chat/completions", content=b"not json")
            models = await http.get(f"{url}/models")
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert models.json()["data"][0]["id"] == "scripted"


def test_served_from_a_thread_for_sync_callers() -> None:
    model = ScriptedModel().script("from a thread")
    with model.serve_in_thread() as url:
        client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
        completion = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
        client.close()
        assert model.wait_for_requests(1, timeout=5)[0].messages[0]["content"] == "x"
    assert completion.choices[0].message.content == "from a thread"
