"""`python -m llama_mesh.testing [ADDRESS]`: the scripted model as a server of its own,
for trying the agents of a deployment without a model (docs/agents-api.md).

It answers every conversation the same simple way (`echo`): offered tools it has not
had a result from yet, it calls the first one (every required argument "France");
after a tool's result, it says it; else it echoes the last user message.

    $ python -m llama_mesh.testing 127.0.0.1:8000
    scripted model: http://127.0.0.1:8000/v1 (echoes; Ctrl-C stops it)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from llama_mesh.testing import RecordedRequest, Reply, ScriptedModel, ToolCall

DEFAULT_ADDRESS = "127.0.0.1:8000"


def echo(request: RecordedRequest) -> Reply:
    """Call the first tool offered, say a tool's result, or echo the user."""
    messages = request.messages
    last = messages[-1] if messages else {}
    tools: list[dict[str, Any]] = (
        request.body.get("tools") or [] if isinstance(request.body, dict) else []
    )
    if last.get("role") == "tool":
        return Reply(f"The answer is {last.get('content')}.")
    if tools:
        function = tools[0]["function"]
        required = function.get("parameters", {}).get("required", [])
        return Reply(tool_calls=[ToolCall(function["name"], dict.fromkeys(required, "France"))])
    users = [m for m in messages if m.get("role") == "user"]
    text = users[-1].get("content") if users else ""
    return Reply(f"ECHO: {text}")


async def serve(port: int, model: str) -> None:
    async with ScriptedModel(model).respond_with(echo).serve(port) as base_url:
        print(f"scripted model: {base_url} (echoes; Ctrl-C stops it)", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C cancels it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llama_mesh.testing",
        description="Serve the scripted OpenAI-compatible model: it echoes the last user "
        "message, and calls the first tool it is offered.",
    )
    parser.add_argument(
        "address",
        nargs="?",
        default=DEFAULT_ADDRESS,
        help=f"127.0.0.1:PORT to listen on (default {DEFAULT_ADDRESS})",
    )
    parser.add_argument("--model", default="scripted", help="the model id /v1/models lists")
    args = parser.parse_args(argv)
    host, _, port = str(args.address).rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        parser.error(f"ADDRESS must be 127.0.0.1:PORT, not {args.address!r}")
    try:
        asyncio.run(serve(int(port), args.model))
    except KeyboardInterrupt:
        return 0
    except OSError as e:
        print(f"error: cannot listen on {args.address}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
