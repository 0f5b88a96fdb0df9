"""The models' OpenAI client (worker/model_client.py) sends the request the SDK would,
without walking the conversation through the SDK's per-message transform, and reads
the answers the SDK would, validated instead of built by the SDK's walk."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pydantic
import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.llms import ChatMessage
from openai import APIConnectionError, AsyncOpenAI
from openai._models import construct_type
from openai._utils._transform import async_maybe_transform
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessage

from llama_mesh.config import ModelConfig
from llama_mesh.core.errors import TaskFailedError
from llama_mesh.launch.local import LocalMesh
from llama_mesh.testing import ScriptedModel
from llama_mesh.worker.model_client import ModelClient
from llama_mesh.worker.models import build_llm, model_client

from processes import CLI, run

CONVERSATION: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": [{"type": "text", "text": "2 + 3?"}]},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call-1",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call-1", "content": "5"},
    {"role": "user", "content": "and in words?", "name": "ann"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
        },
    }
]


@pytest.fixture
def walked(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The messages each request's body held when the SDK walked it."""
    seen: list[Any] = []

    async def spy(data: Any, expected_type: Any) -> Any:
        seen.append(list(data.get("messages", [])))
        return await async_maybe_transform(data, expected_type)

    monkeypatch.setattr("openai.resources.chat.completions.completions.async_maybe_transform", spy)
    return seen


async def _send(client: AsyncOpenAI, messages: list[Any], **more: Any) -> None:
    stream = await client.chat.completions.create(  # type: ignore[call-overload]
        model="scripted",
        messages=messages,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.1,
        **more,
    )
    async for _ in stream:
        pass


async def test_the_model_gets_the_request_the_sdk_sends_and_the_walk_is_skipped(
    model: ScriptedModel, model_url: str, walked: list[Any]
) -> None:
    model.script("five", "five")
    async with (
        AsyncOpenAI(base_url=model_url, api_key="none", max_retries=0) as sdk,
        ModelClient(base_url=model_url, api_key="none", max_retries=0) as ours,
    ):
        await _send(sdk, CONVERSATION, extra_body={"top_k": 3})
        await _send(ours, CONVERSATION, extra_body={"top_k": 3})
    assert model.requests[1].body == model.requests[0].body
    assert model.requests[1].body["messages"] == CONVERSATION
    assert model.requests[1].body["top_k"] == 3
    # The SDK walked the conversation for its own client only.
    assert walked == [CONVERSATION, []]


async def test_messages_that_are_not_plain_json_go_the_sdks_way(
    model: ScriptedModel, model_url: str, walked: list[Any]
) -> None:
    model.script("ok")
    answer = ChatCompletionMessage(role="assistant", content="five")
    async with ModelClient(base_url=model_url, api_key="none", max_retries=0) as ours:
        await _send(ours, [CONVERSATION[0], answer])
    # The SDK dumped the pydantic message, as it does for any client.
    assert model.requests[0].messages == [
        CONVERSATION[0],
        {"role": "assistant", "content": "five"},
    ]
    assert walked == [[CONVERSATION[0], answer]]


async def test_a_deployment_model_sends_its_conversation_unwalked(
    model: ScriptedModel, model_url: str, walked: list[Any]
) -> None:
    model.script("Hi.")
    llm = build_llm("scripted", ModelConfig(base_url=model_url, max_retries=0))
    # The client build_llm made is the caller's to close.
    async with llm._get_aclient():
        await llm.achat([ChatMessage(role="system", content="sys"), ChatMessage(content="hello")])
    assert model.requests[0].messages == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hello"},
    ]
    assert walked == [[]]


async def test_streamed_answers_share_one_connection(model: ScriptedModel, model_url: str) -> None:
    model.script("one", "two", "three", "four")
    async with AsyncOpenAI(base_url=model_url, api_key="none", max_retries=0) as sdk:
        await _send(sdk, CONVERSATION)
        await _send(sdk, CONVERSATION)
    async with ModelClient(base_url=model_url, api_key="none", max_retries=0) as client:
        config = ModelConfig(base_url=model_url, max_retries=0)
        llm = build_llm("scripted", config, async_openai_client=client)
        for _ in range(2):
            answer = await llm.astream_chat([ChatMessage(content="hello")])
            async for _chunk in answer:
                pass
    sdk_peers, our_peers = (
        {r.peer for r in model.requests[:2]},
        {r.peer for r in model.requests[2:]},
    )
    # The SDK's own client stops reading at [DONE]: its connection is closed each time.
    assert len(sdk_peers) == 2
    # Ours reads the body to its end: the second call goes on the first one's connection.
    assert len(our_peers) == 1
    assert [r.texts()[-1] for r in model.requests[2:]] == ["hello", "hello"]


async def _read_request(reader: asyncio.StreamReader) -> None:
    """Read one HTTP request, its head and its body, off `reader`."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)


async def test_a_body_held_open_after_done_ends_the_answer_all_the_same() -> None:
    """A server that sends [DONE] and keeps the body open: the answer ends after a
    moment (DRAIN_SECONDS), not when the client's read timeout runs out."""
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "Hi."}, "finish_reason": "stop"}],
    }
    hold = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for frame in (json.dumps(chunk), "[DONE]"):
            data = f"data: {frame}\n\n".encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()
        await hold.wait()  # the body never ends
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with ModelClient(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=20
        ) as client:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            texts = [c.choices[0].delta.content async for c in stream]
        assert texts == ["Hi."]
    finally:
        hold.set()
        server.close()
        await server.wait_closed()


async def test_answers_are_validated_into_what_the_sdk_builds(
    model: ScriptedModel, model_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model.script("one two three", "one two three")
    built: list[Any] = []

    def spy(*, type_: Any, value: object) -> object:
        built.append(type_)
        return construct_type(type_=type_, value=value)

    monkeypatch.setattr("openai._base_client.construct_type", spy)
    read: list[list[dict[str, Any]]] = []
    for client in (
        AsyncOpenAI(base_url=model_url, api_key="none", max_retries=0),
        ModelClient(base_url=model_url, api_key="none", max_retries=0),
    ):
        async with client:
            stream = await client.chat.completions.create(
                model="scripted", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            # All but what differs by answer (its id, when it was made).
            read.append([chunk.model_dump(exclude={"id", "created"}) async for chunk in stream])
        built.append("--")
    assert read[1] == read[0]
    texts = [c["choices"][0]["delta"]["content"] or "" for c in read[1] if c["choices"]]
    assert "".join(texts) == "one two three"
    # The SDK built each chunk with its walk; ours validated every one.
    assert built.count(ChatCompletionChunk) == len(read[0])
    assert built[-1] == "--" and built[-2] == "--"


async def test_a_chunk_that_does_not_validate_is_read_the_sdks_way() -> None:
    """A server that leaves out fields the OpenAI types require (here the chunk's id,
    created and object): the chunk is built leniently, as the SDK does."""
    chunk = {"model": "m", "choices": [{"delta": {"content": "Hi."}, "finish_reason": "stop"}]}
    with pytest.raises(pydantic.ValidationError):
        ChatCompletionChunk.model_validate(chunk)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        body = "".join(f"data: {frame}\n\n" for frame in (json.dumps(chunk), "[DONE]")).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with ModelClient(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            texts = [c.choices[0].delta.content async for c in stream]
        assert texts == ["Hi."]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_that_cannot_be_reached_is_named_in_the_error(stream: bool) -> None:
    """What a turn fails with when the deployment's model is not running: the SDK's
    "Connection error." alone leaves the reader guessing which endpoint."""
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
        async with ModelClient(base_url=url, api_key="none", max_retries=0) as client:
            with pytest.raises(APIConnectionError) as caught:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}], stream=stream
                )
    assert str(caught.value) == (
        f"cannot connect to the model at {url}/ (All connection attempts failed): "
        "is its server running?"
    )


async def test_a_task_whose_model_cannot_be_reached_stores_one_clear_cause() -> None:
    """What `llama-mesh tasks get` shows of an agent's turn whose model is not running:
    the one exception that names the endpoint and what failed, where the agent called
    the model. It showed the chain under it as well: httpcore's and httpx's frames, then
    the SDK's "Connection error.", each "the direct cause of the following exception"."""
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
        config = ModelConfig(base_url=url, max_retries=0)
        async with model_client("m", config) as client:
            llm = build_llm("m", config, async_openai_client=client)
            async with LocalMesh({"agent": FunctionAgent(tools=[], llm=llm)}) as mesh:
                session = await mesh.client.create_session()
                with pytest.raises(TaskFailedError) as failed:
                    await session.run("agent", user_msg="hi")
                shown = await run(
                    str(CLI),
                    "tasks",
                    "get",
                    failed.value.task.name,
                    env={"LLAMA_MESH_CONTROL_PLANE": mesh.address},
                )
    cause = (
        f"openai.APIConnectionError: cannot connect to the model at {url}/ "
        "(All connection attempts failed): is its server running?"
    )
    stored = failed.value.traceback
    assert stored.count("Traceback (most recent call last):") == 1
    assert "The above exception" not in stored and "During handling" not in stored
    assert "Connection error." not in stored
    assert "httpcore" not in stored and "httpx" not in stored
    assert stored.splitlines()[-1] == cause
    assert "function_agent.py" in stored  # where the agent called its model
    assert shown.code == 0, shown.stderr
    assert shown.stdout.split("The task's traceback, on its replica:\n", 1)[1] == stored + "\n"
