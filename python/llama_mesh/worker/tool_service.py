"""Tool services: a set of llama-index tools served as one service of the mesh.

    tools = ToolService([FunctionTool.from_defaults(fn=get_the_secret_fact), add])
    async with LocalMesh({"secret_tools": tools}) as mesh: ...

One task calls one tool: its input is ``{"tool": NAME, "arguments": {...}}`` and its
result is what the tool returned (its raw output when that is JSON, else the text the
tool gave). The registry publishes each tool's name, description and JSON Schema
(``Service.tools``), which is what an agent elsewhere turns back into llama-index tools
(mesh_tools.py). A tool that raises fails its task with the exception's type, which
the calling agent sees as a typed error.

It is an ordinary Workflow, served by the same runtime as every other service.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pydantic
import pydantic_core
from llama_index.core.tools import BaseTool, FunctionTool, ToolOutput, adapt_to_async_tool
from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent

from llama_mesh.v1 import resources_pb2


class ToolNotFoundError(LookupError):
    """The task names a tool the service does not serve."""


class InvalidToolArgumentsError(ValueError):
    """The arguments do not match the tool's JSON Schema."""


class ToolError(RuntimeError):
    """The tool reported an error in its output instead of raising."""


class ToolRequest(StartEvent):
    """The input of a tool service's task: which tool, with which arguments."""

    tool: str
    arguments: dict[str, Any] = pydantic.Field(default_factory=dict)


def tool_result(output: ToolOutput) -> Any:
    """What a tool returned, as JSON: its raw output if that is JSON, else its text."""
    raw = output.raw_output
    if raw is None or isinstance(raw, str):
        return output.content if raw is None else raw
    try:
        return pydantic_core.to_jsonable_python(raw)
    except pydantic_core.PydanticSerializationError:
        return output.content


def _tool_name(tool: BaseTool) -> str:
    name = tool.metadata.name
    if not name:
        raise ValueError(f"tool {tool!r} has no name: give it one (FunctionTool name=...)")
    return name


class ToolService(Workflow):
    """Serves llama-index tools (``FunctionTool``s, sync or async, or plain functions)."""

    mesh_service_kind = resources_pb2.SERVICE_KIND_TOOL

    def __init__(
        self,
        tools: Sequence[BaseTool | Callable[..., Any]],
        *,
        description: str = "",
    ) -> None:
        super().__init__(timeout=None)
        converted = [t if isinstance(t, BaseTool) else FunctionTool.from_defaults(t) for t in tools]
        self.tools: dict[str, BaseTool] = {}
        for tool in converted:
            name = _tool_name(tool)
            if name in self.tools:
                raise ValueError(f"two tools are named {name!r}: tool names must be unique")
            self.tools[name] = tool
        self.description = description or "Tools: " + ", ".join(self.tools)

    def __repr__(self) -> str:
        return f"<ToolService {list(self.tools)}>"

    def mesh_tools(self) -> list[dict[str, Any]]:
        """Each tool's name, description and JSON Schema, for the registry."""
        return [
            {
                "name": name,
                "description": tool.metadata.description,
                "parameters": tool.metadata.get_parameters_dict(),
            }
            for name, tool in self.tools.items()
        ]

    def mesh_input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "tool": {"type": "string", "enum": list(self.tools)},
                "arguments": {"type": "object"},
            },
            "required": ["tool"],
            "additionalProperties": False,
        }

    @step
    async def call_tool(self, ctx: Context, ev: ToolRequest) -> StopEvent:
        tool = self.tools.get(ev.tool)
        if tool is None:
            raise ToolNotFoundError(
                f"no tool named {ev.tool!r} in this service; it serves {sorted(self.tools)}"
            )
        arguments = dict(ev.arguments)
        schema = tool.metadata.fn_schema
        if schema is not None and not (isinstance(tool, FunctionTool) and tool.requires_context):
            try:
                schema.model_validate(arguments)
            except pydantic.ValidationError as err:
                raise InvalidToolArgumentsError(
                    f"arguments of tool {ev.tool!r} do not match its schema: {err}"
                ) from None
        if isinstance(tool, FunctionTool) and tool.requires_context and tool.ctx_param_name:
            # A tool that takes a Context gets the service's own, kept per session.
            arguments[tool.ctx_param_name] = ctx
        output = await adapt_to_async_tool(tool).acall(**arguments)
        if output.is_error:
            raise ToolError(output.content)
        return StopEvent(result=tool_result(output))
