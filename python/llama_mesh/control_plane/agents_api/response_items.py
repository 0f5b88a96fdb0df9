"""The Responses API's items: the input a request sends, the output a response has,
and the conversation the model reads.

Pure. A request's `input` (text, or a list of items) becomes a list of items as the
API stores and lists them (each with an id); a response's output items are the
assistant's message and its `function_call`s. The model reads the conversation as
chat messages (llama-index ChatMessage JSON, core/agent_turns.TurnInput.chat_history):
messages keep their role, `function_call` items are the assistant's tool calls and
`function_call_output` items the tools' answers. Output items are stored and sent as
responses_pb2.OutputItem (item_proto / item_json convert).

    >>> items = input_items("hi", new_id=lambda prefix: prefix + "1")
    >>> items[0]["role"], items[0]["content"], items[0]["id"]
    ('user', 'hi', 'msg_1')
    >>> chat_messages(items)
    [{'role': 'user', 'content': 'hi'}]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from llama_mesh.core import agent_events as ae
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.v1 import responses_pb2 as rs

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text", "text")


def _bad(field: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{field}: {why}", field=field)


def content_text(content: Any, field: str) -> str:
    """A message's text: a string, or the text of its text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(field, "content is text or a list of text parts")
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS:
            raise _bad(
                f"{field}[{index}]",
                f"a content part is one of {list(TEXT_PARTS)} (images and files are not supported)",
            )
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def _item(raw: Any, field: str, new_id: Callable[[str], str]) -> dict[str, Any]:
    """One input item, checked, with its type and an id."""
    if not isinstance(raw, dict):
        raise _bad(field, "an input item is an object")
    item = dict(raw)
    kind = item.setdefault("type", "message")
    if kind == "message":
        if item.get("role") not in ROLES:
            raise _bad(f"{field}.role", f"role {item.get('role')!r} is not one of {list(ROLES)}")
        content_text(item.get("content"), f"{field}.content")
        item.setdefault("id", new_id("msg_"))
    elif kind == "function_call_output":
        if not isinstance(item.get("call_id"), str) or not item["call_id"]:
            raise _bad(f"{field}.call_id", "a function_call_output needs the call's call_id")
        if not isinstance(item.get("output"), str):
            raise _bad(f"{field}.output", "a function_call_output's output is text")
        item.setdefault("id", new_id("fco_"))
    elif kind == "function_call":
        for key in ("call_id", "name", "arguments"):
            if not isinstance(item.get(key), str):
                raise _bad(f"{field}.{key}", f"a function_call needs `{key}` (text)")
        item.setdefault("id", new_id("fc_"))
    else:
        raise _bad(
            f"{field}.type",
            f"item type {kind!r} is not one of 'message', 'function_call', 'function_call_output'",
        )
    return item


def input_items(value: Any, new_id: Callable[[str], str]) -> list[dict[str, Any]]:
    """A request's `input` as stored items; INVALID_ARGUMENT naming what is wrong."""
    if isinstance(value, str):
        if not value:
            raise _bad("input", "the input is empty")
        return [{"type": "message", "role": "user", "content": value, "id": new_id("msg_")}]
    if not isinstance(value, list) or not value:
        raise _bad("input", "the input is text or a non-empty list of items")
    return [_item(raw, f"input[{index}]", new_id) for index, raw in enumerate(value)]


def check_conversation(conversation: list[dict[str, Any]], new: int) -> None:
    """A conversation the model can answer: it has a user's message, and each
    function_call_output answers a function_call before it. The last `new` items are
    the request's input (named by their index there); the others its chain's.
    INVALID_ARGUMENT otherwise (it failed the response: IndexError in the agent)."""
    first_new = len(conversation) - new
    calls: set[str] = set()
    for index, item in enumerate(conversation):
        kind = item.get("type", "message")
        if kind == "function_call":
            calls.add(item["call_id"])
        elif kind == "function_call_output" and item["call_id"] not in calls:
            field = f"input[{index - first_new}].call_id"
            raise _bad(
                field,
                f"no function_call with call_id {item['call_id']!r} comes before it: a "
                "function_call_output answers a call of this input or of the response "
                "named by previous_response_id",
            )
    if not any(
        item.get("type", "message") == "message" and item["role"] == "user" for item in conversation
    ):
        raise _bad("input", "the conversation has no message with role 'user' to answer")


def output_items(
    text: str, calls: list[ae.ToolCallRequest], new_id: Callable[[str], str]
) -> list[dict[str, Any]]:
    """A completed response's output: its message (if it said anything, or called no
    function) and its function calls."""
    out: list[dict[str, Any]] = []
    if text or not calls:
        out.append(message_item(new_id("msg_"), text, "completed"))
    out += [function_call_item(new_id("fc_"), call) for call in calls]
    return out


def message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    parts = [{"type": "output_text", "text": text, "annotations": []}] if status else []
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": status,
        "content": parts,
    }


def function_call_item(item_id: str, call: ae.ToolCallRequest) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.call_id,
        "name": call.tool_name,
        "arguments": json.dumps(call.arguments),
        "status": "completed",
    }


def chat_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as the model reads it (llama-index ChatMessage JSON)."""
    out: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            out.append({"role": role, "content": content_text(item.get("content"), "input")})
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("additional_kwargs", {}).setdefault("tool_calls", []).append(call)
            else:
                out.append(
                    {
                        "role": "assistant",
                        "content": "",
                        "additional_kwargs": {"tool_calls": [call]},
                    }
                )
        elif kind == "function_call_output":
            out.append(
                {
                    "role": "tool",
                    "content": item["output"],
                    "additional_kwargs": {"tool_call_id": item["call_id"]},
                }
            )
    return out


def item_proto(item: dict[str, Any]) -> rs.OutputItem:
    if item["type"] == "function_call":
        fields = ("id", "call_id", "name", "arguments", "status")
        return rs.OutputItem(function_call=rs.FunctionCallItem(**{k: item[k] for k in fields}))
    content = [
        rs.OutputContent(output_text=rs.OutputText(text=part["text"])) for part in item["content"]
    ]
    return rs.OutputItem(
        message=rs.OutputMessage(
            id=item["id"], role="assistant", status=item["status"], content=content
        )
    )


def item_json(item: rs.OutputItem) -> dict[str, Any]:
    if item.HasField("function_call"):
        call = item.function_call
        return {
            "type": "function_call",
            "id": call.id,
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
            "status": call.status,
        }
    text = "".join(part.output_text.text for part in item.message.content)
    return message_item(item.message.id, text, item.message.status)
