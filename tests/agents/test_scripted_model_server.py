"""`python -m llama_mesh.testing`: the scripted model as a server of its own, for a
reader of docs/agents-api.md with no model at hand (the doc test starts it as the page
says, and runs the page's clients against it)."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from llama_mesh.testing import ScriptedModel
from llama_mesh.testing.__main__ import echo

CAPITAL: Any = {
    "type": "function",
    "function": {
        "name": "capital",
        "description": "The capital of a country.",
        "parameters": {
            "type": "object",
            "properties": {"country": {"type": "string"}},
            "required": ["country"],
        },
    },
}


async def test_it_echoes_calls_the_first_tool_then_says_its_result() -> None:
    model = ScriptedModel().respond_with(echo)
    async with model.serve() as url, openai.AsyncOpenAI(base_url=url, api_key="x") as client:
        said = await client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "hello"}]
        )
        called = await client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "hi"}], tools=[CAPITAL]
        )
        [call] = called.choices[0].message.tool_calls or []
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        asked: Any = {"role": "assistant", "tool_calls": [call.model_dump()]}
        answered = await client.chat.completions.create(
            model="scripted",
            tools=[CAPITAL],
            messages=[
                {"role": "user", "content": "hi"},
                asked,
                {"role": "tool", "tool_call_id": call.id, "content": "Paris"},
            ],
        )
    assert said.choices[0].message.content == "ECHO: hello"
    assert (call.function.name, call.function.arguments) == ("capital", '{"country": "France"}')
    assert answered.choices[0].message.content == "The answer is Paris."


async def test_a_taken_address_is_an_error_that_names_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "llama_mesh.testing",
            address,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
    assert process.returncode == 1
    assert out == b""
    assert err.decode() == f"error: cannot listen on {address}: Address already in use\n"
