"""Client tools: tools the caller runs. A turn that calls one waits for the responses.

A client tool is offered to the model like any tool (name, description, JSON Schema),
but its calls are not run here: once every client call of an inference step has been
made, the agent writes ``ClientToolCallsRequested`` (an InputRequiredEvent) into its
stream, which the mapper turns into ``llama_mesh.agent.AwaitingClientTools`` and the
runtime into a task WAITING_FOR_INPUT. The caller answers with one
``ClientToolResponses`` event (SendTaskEvent; the Agents API's ResumeTurn), whose
responses become the calls' results and the turn goes on. A new attempt of the task
asks again and finds the stored answer (task_inputs.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from llama_index.core.tools import AsyncBaseTool, ToolMetadata, ToolOutput, ToolSelection
from workflows.events import HumanResponseEvent, InputRequiredEvent

from llama_mesh.core import agent_events as ae
from llama_mesh.worker.mesh_tools import RemoteToolMetadata, _AnyArguments


class ClientToolCallsRequested(InputRequiredEvent):
    """The turn waits for the caller to run these calls (mapped to AwaitingClientTools)."""

    tool_calls: list[dict[str, Any]]


class ClientToolResponses(HumanResponseEvent):
    """The caller's responses to the client tool calls a turn waits for (the payload of
    a ``llama_mesh.agent.ClientToolResponses`` event, core/agent_events.py). A
    HumanResponseEvent, so that workflows knows it comes from outside the run."""

    tool_responses: list[dict[str, Any]]


def content_text(content: Any) -> str:
    """A client tool's response as the model reads it: text, or JSON for anything else."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict) and content.get("type") == "text":
        return str(content.get("text", ""))
    if isinstance(content, list) and all(
        isinstance(item, dict) and item.get("type") == "text" for item in content
    ):
        return "".join(str(item.get("text", "")) for item in content)
    return json.dumps(content)


class ClientTool(AsyncBaseTool):
    """A tool the caller runs: the model sees its schema; the agent never calls it
    (ConfiguredAgent waits for the caller's response instead)."""

    def __init__(self, name: str, description: str, parameters: dict[str, Any]) -> None:
        self._metadata: ToolMetadata = RemoteToolMetadata(
            name=name, description=description, fn_schema=_AnyArguments, parameters=parameters
        )

    @property
    def metadata(self) -> ToolMetadata:
        return self._metadata

    def call(self, *args: Any, **kwargs: Any) -> ToolOutput:
        raise NotImplementedError(f"{self.metadata.name} is a client tool: the caller runs it")

    async def acall(self, *args: Any, **kwargs: Any) -> ToolOutput:
        raise NotImplementedError(f"{self.metadata.name} is a client tool: the caller runs it")


class PendingClientCalls:
    """The client tool calls of the current inference step, until the caller answers."""

    def __init__(self) -> None:
        self.calls: list[ToolSelection] = []
        self._responses: dict[str, asyncio.Future[str]] = {}
        self._asked = False

    def expect(self, calls: list[ToolSelection]) -> None:
        """The model asked for these client calls (before any of them is made)."""
        self.calls = list(calls)
        loop = asyncio.get_running_loop()
        self._responses = {c.tool_id: loop.create_future() for c in calls}
        self._asked = False

    def request(self) -> ClientToolCallsRequested | None:
        """The event that asks the caller, once per step (None if asked already)."""
        if self._asked:
            return None
        self._asked = True
        calls = [
            ae.ToolCallRequest(
                call_id=c.tool_id, tool_name=c.tool_name, arguments=dict(c.tool_kwargs or {})
            ).model_dump(mode="json")
            for c in self.calls
        ]
        return ClientToolCallsRequested(tool_calls=calls)

    async def response(self, call_id: str) -> str:
        return await self._responses[call_id]

    def answer(self, event: ClientToolResponses) -> None:
        given = {
            str(r.get("call_id")): content_text(r.get("content")) for r in event.tool_responses
        }
        for call_id, future in self._responses.items():
            if not future.done():
                future.set_result(given.get(call_id, "Error: the caller sent no response"))
