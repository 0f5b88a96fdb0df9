"""What a CreateResponseRequest asks for: its sampling, its function tools, and the
response object it starts as.

Pure: no storage, no tasks. Responses (responses.py) checks the request with these,
then creates the task that makes the response.
"""

from __future__ import annotations

import time
import uuid

from google.protobuf import struct_pb2

from llama_mesh.core import agent_config
from llama_mesh.core.agent_turns import FunctionToolSpec
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.json_values import to_python
from llama_mesh.core.limits import (
    MAX_LABEL_VALUE_CHARS,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS,
)
from llama_mesh.v1 import agents_pb2 as ag
from llama_mesh.v1 import responses_pb2 as rs


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4()}"


TOOL_CHOICE_MODES = ("auto", "none", "required")
TRUNCATIONS = ("auto", "disabled")


def _bad(field: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{field}: {why}", field=field)


def check_request(request: rs.CreateResponseRequest) -> None:
    """The request's settings, as OpenAI checks them: INVALID_ARGUMENT naming the
    field, before the response is stored or run (a model that refused them later failed
    the response with a server_error)."""
    if request.HasField("temperature"):
        agent_config.check_temperature(request.temperature, "temperature")
    if request.HasField("top_p"):
        agent_config.check_top_p(request.top_p, "top_p")
    if request.text.format.HasField("json_schema"):
        agent_config.check_object_schema(
            to_python(request.text.format.json_schema.schema), "text.format.schema"
        )
    if request.HasField("truncation") and request.truncation not in TRUNCATIONS:
        # Echoed in the response as sent: a typo looked accepted.
        raise _bad("truncation", f"{request.truncation!r} is not one of {list(TRUNCATIONS)}")
    if request.HasField("max_output_tokens") and request.max_output_tokens < 1:
        raise _bad("max_output_tokens", f"must be at least 1 (got {request.max_output_tokens})")
    # Stored with the response: unbounded, they made it larger than NATS takes (500).
    _check_chars("user", request.user, MAX_LABEL_VALUE_CHARS)
    metadata = request.metadata.fields
    if len(metadata) > MAX_METADATA_PAIRS:
        raise _bad("metadata", f"at most {MAX_METADATA_PAIRS} pairs (got {len(metadata)})")
    for key, value in metadata.items():
        _check_chars("metadata", key, MAX_METADATA_KEY_CHARS, "a key")
        if value.WhichOneof("kind") != "string_value":
            raise _bad(f"metadata.{key}", "a metadata value is text")
        _check_chars(f"metadata.{key}", value.string_value, MAX_METADATA_VALUE_CHARS)


def _check_chars(field: str, text: str, limit: int, what: str = "") -> None:
    if len(text) > limit:
        raise _bad(
            field,
            f"{what or 'it'} is {len(text)} characters, over the limit of {limit} characters",
        )


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


def function_tools(
    request: rs.CreateResponseRequest, config: ag.AgentConfig
) -> tuple[list[FunctionToolSpec], str | None]:
    """The request's function tools and its tool_choice (a mode, or the name of one of
    them or of the agent's client tools `config` has)."""
    tools: list[FunctionToolSpec] = []
    for index, tool in enumerate(request.tools):
        field = f"tools[{index}]"
        if not tool.HasField("function") or not tool.function.name:
            raise _bad(field, "only function tools (with a name) are supported")
        agent_config.check_tool_name(tool.function.name, f"{field}.name")
        if any(t.name == tool.function.name for t in tools):
            raise _bad(f"{field}.name", f"two tools are named {tool.function.name!r}")
        parameters = (
            to_python(tool.function.parameters)
            if tool.function.HasField("parameters")
            else {"type": "object"}
        )
        agent_config.check_object_schema(parameters, f"{field}.parameters")
        tools.append(
            FunctionToolSpec(
                name=tool.function.name,
                description=tool.function.description,
                parameters=parameters,
            )
        )
    choice = to_python(request.tool_choice) if request.HasField("tool_choice") else None
    if isinstance(choice, dict) and choice.get("type") == "function":
        choice = choice.get("name")
    names = [t.name for t in tools] + [t.name for t in config.client_tools]
    if choice is not None and (
        not isinstance(choice, str) or (choice not in TOOL_CHOICE_MODES and choice not in names)
    ):
        raise _bad(
            "tool_choice",
            f"{choice!r} is not 'auto', 'none', 'required' or "
            "{'type': 'function', 'name': ...} naming one of the tools "
            f"({names})",
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
