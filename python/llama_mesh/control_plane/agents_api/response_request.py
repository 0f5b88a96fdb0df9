"""What a CreateResponseRequest asks for: its sampling, its function tools, and the
response object it starts as.

Pure: no storage, no tasks. Responses (responses.py) checks the request with these,
then creates the task that makes the response.
"""

from __future__ import annotations

import time
import uuid

from google.protobuf import struct_pb2

from llama_mesh.core.agent_turns import FunctionToolSpec
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.json_values import to_python
from llama_mesh.v1 import agents_pb2 as ag
from llama_mesh.v1 import responses_pb2 as rs


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4()}"


def apply_sampling(config: ag.AgentConfig, request: rs.CreateResponseRequest) -> None:
    """The request's temperature, top_p, max_output_tokens and JSON schema, set on the
    configuration the response runs with."""
    params = config.sampling_params
    if request.HasField("temperature") or request.HasField("top_p"):
        top_p = params.strategy.top_p_sampling
        if request.HasField("temperature"):
            top_p.temperature = request.temperature
        if request.HasField("top_p"):
            top_p.top_p = request.top_p
    if request.HasField("max_output_tokens"):
        params.max_tokens = request.max_output_tokens
    fmt = request.text.format
    if fmt.HasField("json_schema"):
        config.response_format.json_schema_format.json_schema.CopyFrom(fmt.json_schema.schema)


def function_tools(request: rs.CreateResponseRequest) -> tuple[list[FunctionToolSpec], str | None]:
    """The request's function tools and its tool_choice (a mode, or a tool's name)."""
    tools = []
    for index, tool in enumerate(request.tools):
        if not tool.HasField("function") or not tool.function.name:
            field_name = f"tools[{index}]"
            raise InvalidArgumentError(
                f"{field_name}: only function tools (with a name) are supported",
                field=field_name,
            )
        tools.append(
            FunctionToolSpec(
                name=tool.function.name,
                description=tool.function.description,
                parameters=to_python(tool.function.parameters)
                if tool.function.HasField("parameters")
                else {"type": "object"},
            )
        )
    choice = to_python(request.tool_choice) if request.HasField("tool_choice") else None
    if isinstance(choice, dict):
        choice = choice.get("name")
    if choice is not None and not isinstance(choice, str):
        raise InvalidArgumentError(
            "tool_choice: 'auto', 'none', 'required' or {'type': 'function', 'name': ...}",
            field="tool_choice",
        )
    return tools, choice


def response_object(request: rs.CreateResponseRequest, response_id: str) -> rs.ResponseObject:
    """The response as it starts (in_progress), echoing the request's settings with
    OpenAI's defaults for those it did not send."""
    response = rs.ResponseObject(
        id=response_id,
        object="response",
        created_at=int(time.time()),
        status="in_progress",
        model=request.model,
        parallel_tool_calls=request.parallel_tool_calls
        if request.HasField("parallel_tool_calls")
        else True,
        tool_choice=request.tool_choice
        if request.HasField("tool_choice")
        else struct_pb2.Value(string_value="auto"),
        tools=request.tools,
        store=request.store if request.HasField("store") else True,
        truncation=request.truncation if request.HasField("truncation") else "disabled",
    )
    for name in (
        "instructions",
        "previous_response_id",
        "temperature",
        "top_p",
        "user",
        "max_output_tokens",
    ):
        if request.HasField(name):
            setattr(response, name, getattr(request, name))
    if request.HasField("metadata"):
        response.metadata.CopyFrom(request.metadata)
    if request.text.HasField("format"):
        response.text.CopyFrom(request.text)
    else:
        response.text.format.text.SetInParent()
    return response
