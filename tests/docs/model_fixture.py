"""The doc-test fixture `scripted-model`: the scripted OpenAI-compatible server, standing
where a page's deployment file names its model (`http://127.0.0.1:8000/v1`).

It answers any conversation: offered tools and not yet answered by one, it calls the
first tool (every required argument "France"); else it echoes the last user message,
or the last tool result.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from llama_mesh.testing import RecordedRequest, Reply, ScriptedModel, ToolCall

if TYPE_CHECKING:
    from docs.runner import PageRun

DOC_MODEL = "127.0.0.1:8000"


def answer(request: RecordedRequest) -> Reply:
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


@contextlib.asynccontextmanager
async def scripted_model(run: PageRun) -> AsyncIterator[None]:
    """Serve the model and point the workspace's deployment files at it."""
    model = ScriptedModel().respond_with(answer)
    async with model.serve() as base_url:
        real = base_url.removeprefix("http://").removesuffix("/v1")
        for path in (run.workspace / "examples").rglob("deployment.yaml"):
            text = path.read_text(encoding="utf-8")
            if DOC_MODEL in text:
                path.write_text(text.replace(DOC_MODEL, real), encoding="utf-8")
        yield
