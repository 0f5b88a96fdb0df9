"""The meta-tool: services of the mesh as llama-index tools for an agent.

    agent = FunctionAgent(
        tool_retriever=MeshTools("secret_tools", "dumb_fact_agent"),
        llm=llm,
    )

``MeshTools`` names services. A tool service (one that publishes tools in the registry)
gives the agent one tool per remote tool, with the remote name, description and JSON
Schema; any other service (an agent, a workflow, a human service) is offered whole as
one tool named after the service, described by the service's description and taking its
input schema ("service as tool"). The services are looked up in the registry when a
run first needs its tools, so they may be deployed after the agent.

Each call runs as a child task of the agent's task (child_tasks.py): same session, the
parent's deadline and cancellation, announced on the parent's event stream. The tool's
result reaches the model as text; a call that fails (the tool raised, was cancelled or
ran out of time, or the service is gone) reaches it as a typed error message and the
agent's run goes on. Calls the model makes in parallel run concurrently.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pydantic
from google.protobuf import json_format
from llama_index.core.objects import ObjectRetriever
from llama_index.core.schema import QueryBundle
from llama_index.core.tools import AsyncBaseTool, BaseTool, ToolMetadata, ToolOutput

from llama_mesh.core.errors import MeshError, TaskError, TaskFailedError
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.child_tasks import call_service, running_task

logger = logging.getLogger(__name__)

MAX_DESCRIPTION = 1024  # what OpenAI-style function calling accepts


class _AnyArguments(pydantic.BaseModel):
    """Stands for a remote tool's arguments: the JSON Schema itself is what the model
    sees (``get_parameters_dict``), and the tool service validates them."""

    model_config = pydantic.ConfigDict(extra="allow")


@dataclass
class RemoteToolMetadata(ToolMetadata):
    """A tool's metadata with its JSON Schema as published in the registry."""

    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})

    def get_parameters_dict(self) -> dict[str, Any]:
        return self.parameters


def _error_content(tool: str, err: MeshError) -> str:
    if isinstance(err, TaskFailedError):
        return f"Error: tool {tool!r} failed: {err.task.error.message or err.error_type}"
    if isinstance(err, TaskError):
        return f"Error: tool {tool!r} did not finish: {err.task.error.message or err.message}"
    return f"Error: tool {tool!r} could not be called: {type(err).__name__}: {err.message}"


def kind_name(kind: int) -> str:
    """A service kind as the registry's enum names it, lower case: "workflow", "agent"..."""
    name = resources_pb2.ServiceKind.Name(kind).removeprefix("SERVICE_KIND_")  # type: ignore[arg-type]
    return "workflow" if name == "UNSPECIFIED" else name.lower()


# What a model sees to call an agent: its request. (An agent's input schema also has
# the chat history and an iteration limit, which are not the caller's to choose.)
AGENT_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"user_msg": {"type": "string", "description": "What to ask the agent."}},
    "required": ["user_msg"],
}


def service_parameters(kind: str, input_schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a call to a whole service of this kind."""
    if kind == "agent":
        return AGENT_PARAMETERS
    return input_schema or {"type": "object"}


def service_output(kind: str, result: Any) -> Any:
    """What a service's result answers: an agent's response text, else the result."""
    if kind == "agent" and isinstance(result, dict) and isinstance(result.get("response"), str):
        return result["response"]
    return result


def as_text(value: Any) -> str:
    """A result as the text a model is given."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class ServiceTool(AsyncBaseTool):
    """A llama-index tool whose calls run on the mesh as child tasks.

    With `tool` set, it is that tool of the tool service `service`; without, it is the
    service itself (of kind `kind`), called with the tool's arguments as its input.
    """

    def __init__(
        self,
        service: str,
        metadata: ToolMetadata,
        tool: str | None = None,
        kind: str = "workflow",
    ) -> None:
        self.service = service
        self.tool = tool
        self.kind = kind
        self._metadata = metadata

    @classmethod
    def whole(
        cls, service: str, kind: str, description: str, input_schema: dict[str, Any]
    ) -> ServiceTool:
        """A whole service as one tool, named after it ("service as tool")."""
        metadata = RemoteToolMetadata(
            name=service,
            description=(description or f"The {service} service.")[:MAX_DESCRIPTION],
            fn_schema=_AnyArguments,
            parameters=service_parameters(kind, input_schema),
        )
        return cls(service, metadata, kind=kind)

    @classmethod
    def for_service(cls, service: resources_pb2.Service) -> list[ServiceTool]:
        """The tools a registered service offers: its tools, or itself."""
        service_id = service.name.removeprefix("services/")
        if service.kind == resources_pb2.SERVICE_KIND_TOOL or service.tools:
            return [
                cls(
                    service_id,
                    RemoteToolMetadata(
                        name=tool.name,
                        description=tool.description[:MAX_DESCRIPTION],
                        fn_schema=_AnyArguments,
                        parameters=json_format.MessageToDict(tool.parameters) or {"type": "object"},
                    ),
                    tool=tool.name,
                    kind="tool",
                )
                for tool in service.tools
            ]
        schema = json_format.MessageToDict(service.input_schema)
        return [cls.whole(service_id, kind_name(service.kind), service.description, schema)]

    def __repr__(self) -> str:
        where = f"{self.service}.{self.tool}" if self.tool else self.service
        return f"<ServiceTool {where}>"

    @property
    def metadata(self) -> ToolMetadata:
        return self._metadata

    def call(self, *args: Any, **kwargs: Any) -> ToolOutput:
        raise NotImplementedError(f"{self!r} runs on the mesh: await its acall() instead")

    async def acall(self, *args: Any, **kwargs: Any) -> ToolOutput:
        name = self.metadata.get_name()
        if args:
            # A tool called with one positional input (llama-index's default schema).
            kwargs = {"input": args[0], **kwargs}
        if self.tool is None:
            task_input, details = kwargs, {"tool": name}
        else:
            task_input, details = {"tool": self.tool, "arguments": kwargs}, {"tool": name}
        try:
            result = await call_service(self.service, task_input, details=details)
        except MeshError as err:
            logger.info("tool %s of %s: %s", name, self.service, type(err).__name__)
            return ToolOutput(
                content=_error_content(name, err),
                tool_name=name,
                raw_input=kwargs,
                raw_output=None,
                is_error=True,
                exception=err,
            )
        content = as_text(service_output(self.kind, result))
        return ToolOutput(content=content, tool_name=name, raw_input=kwargs, raw_output=result)


class MeshTools(ObjectRetriever[BaseTool]):
    """The tools of named services, for an agent's `tool_retriever`.

        FunctionAgent(tool_retriever=MeshTools("secret_tools"), llm=llm)

    Resolved from the registry inside a task served by llama-mesh (once per attempt);
    elsewhere, e.g. in a notebook, retrieving raises NotInTaskError.
    """

    def __init__(self, *services: str) -> None:
        # No index behind it: ObjectRetriever's retriever and node mapping stay unset.
        if not services:
            raise ValueError("name at least one service")
        self.services = list(services)

    def __repr__(self) -> str:
        return f"MeshTools({', '.join(map(repr, self.services))})"

    def retrieve(self, str_or_query_bundle: str | QueryBundle) -> list[BaseTool]:
        raise NotImplementedError("MeshTools are retrieved asynchronously (aretrieve)")

    async def aretrieve(self, str_or_query_bundle: str | QueryBundle) -> list[BaseTool]:
        task = running_task(repr(self))
        caller = task.caller
        assert caller is not None
        tools: dict[str, BaseTool] = {}
        for service_id in self.services:
            service = task.services.get(service_id)
            if service is None:
                service = await caller.client.get_service(service_id)
                task.services[service_id] = service
            for tool in ServiceTool.for_service(service):
                name = tool.metadata.get_name()
                if name in tools:
                    raise ValueError(
                        f"two tools are named {name!r} ({tools[name]!r} and {tool!r}): "
                        "offer one of them to this agent"
                    )
                tools[name] = tool
        return list(tools.values())
