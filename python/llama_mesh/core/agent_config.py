"""An agent's configuration (llama-stack's AgentConfig): checked, and read for running.

Pure: the Agents API (control plane) checks a configuration with ``check`` before it
stores it, naming the field at fault; the built-in agent service (worker) reads the
same message with the helpers below to build the llama-index agent.

    >>> from llama_mesh.v1 import agents_pb2
    >>> config = agents_pb2.AgentConfig(model="m", instructions="be brief")
    >>> check(config)
    >>> max_infer_iters(config)
    10
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf import json_format, struct_pb2

from llama_mesh.core.errors import InvalidArgumentError, UnimplementedError
from llama_mesh.core.limits import MAX_AGENT_CONFIG_BYTES, check_bytes
from llama_mesh.core.names import SERVICE_ID
from llama_mesh.v1 import agents_pb2

DEFAULT_MAX_INFER_ITERS = 10
# What function-calling models accept as a tool name.
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOOL_CHOICES = ("auto", "required", "none")
TOOL_PROMPT_FORMATS = ("json", "function_tag", "python_list")
SYSTEM_MESSAGE_BEHAVIORS = ("append", "replace")
# llama-stack's parameter types (Python names) and JSON Schema's, as JSON Schema types.
PARAMETER_TYPES = {
    "string": "string",
    "str": "string",
    "integer": "integer",
    "int": "integer",
    "number": "number",
    "float": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "object": "object",
    "dict": "object",
}
PREFIX = "agent_config"


def _invalid(field: str, message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{field}: {message}", field=field)


def toolgroup_names(
    config: agents_pb2.AgentConfig, field: str = f"{PREFIX}.toolgroups"
) -> list[str]:
    """The services named by `toolgroups` (a name, or `{"name": ...}` without args).

    A toolgroup with `args` (memory retrieval's `vector_db_ids`) and llama-stack's
    built-in `builtin::rag` are UNIMPLEMENTED; other values are INVALID_ARGUMENT.
    """
    return [_toolgroup(value, f"{field}[{index}]") for index, value in enumerate(config.toolgroups)]


def turn_toolgroup_names(values: Any, field: str = "toolgroups") -> list[str]:
    """`toolgroup_names` of a turn's own `toolgroups`."""
    return [_toolgroup(value, f"{field}[{index}]") for index, value in enumerate(values)]


def _toolgroup(value: struct_pb2.Value, field: str) -> str:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        fields = value.struct_value.fields
        args = fields.get("args")
        if (
            args is not None
            and args.WhichOneof("kind") == "struct_value"
            and args.struct_value.fields
        ):
            raise UnimplementedError(
                f"{field}: toolgroups with args (memory retrieval, vector_db_ids) are not "
                "supported; name a tool service of the mesh instead"
            )
        name_value = fields.get("name")
        if name_value is None or name_value.WhichOneof("kind") != "string_value":
            raise _invalid(field, "a toolgroup object needs a string 'name'")
        name = name_value.string_value
    elif kind == "string_value":
        name = value.string_value
    else:
        raise _invalid(field, "a toolgroup is the name of a tool service (a string)")
    if name.startswith("builtin::rag"):
        raise UnimplementedError(
            f"{field}: {name!r} (memory retrieval) is not supported by llama-mesh"
        )
    if not SERVICE_ID.fullmatch(name):
        raise _invalid(
            field,
            f"{name!r} is not a service of the mesh: a toolgroup names a deployed service "
            "(1-63 characters of a-z, 0-9, '_' and '-')",
        )
    return name


def check(config: agents_pb2.AgentConfig, field: str = PREFIX) -> None:
    """InvalidArgumentError (or UnimplementedError) naming the first field at fault."""
    check_bytes(
        field,
        config.ByteSize(),
        MAX_AGENT_CONFIG_BYTES,
        "each turn carries the configuration; keep long documents out of the instructions "
        "and give them to the agent through a tool",
    )
    if not config.model:
        raise _invalid(f"{field}.model", "is required: the id of a model of the deployment")
    if not config.HasField("instructions"):
        raise _invalid(f"{field}.instructions", "is required (it may be empty)")
    if config.HasField("max_infer_iters") and config.max_infer_iters < 1:
        raise _invalid(f"{field}.max_infer_iters", "must be at least 1")
    _check_sampling(config, f"{field}.sampling_params")
    if config.HasField("tool_prompt_format"):
        _check_one_of(config.tool_prompt_format, TOOL_PROMPT_FORMATS, f"{field}.tool_prompt_format")
    check_tool_config(config.tool_config, f"{field}.tool_config")
    names = _check_client_tools(config, f"{field}.client_tools")
    toolgroup_names(config, f"{field}.toolgroups")
    choice = tool_choice(config)
    if choice not in TOOL_CHOICES and choice not in names:
        where = (
            "tool_config.tool_choice"
            if config.tool_config.HasField("tool_choice")
            else "tool_choice"
        )
        raise _invalid(
            f"{field}.{where}",
            f"{choice!r} is not 'auto', 'required', 'none' or the name of a client tool",
        )
    for which in ("input_shields", "output_shields"):
        for index, shield in enumerate(getattr(config, which)):
            if not SERVICE_ID.fullmatch(shield):
                raise _invalid(f"{field}.{which}[{index}]", f"{shield!r} is not a service id")
    if config.HasField("response_format"):
        kind = config.response_format.WhichOneof("format")
        if kind == "grammar_format":
            raise UnimplementedError(f"{field}.response_format: grammars are not supported")
        if kind is None or not config.response_format.json_schema_format.json_schema.fields:
            raise _invalid(f"{field}.response_format", "a json_schema format needs its json_schema")
        check_object_schema(
            json_format.MessageToDict(config.response_format.json_schema_format.json_schema),
            f"{field}.response_format.json_schema",
        )


def _check_sampling(config: agents_pb2.AgentConfig, field: str) -> None:
    params = config.sampling_params
    if params.HasField("max_tokens") and params.max_tokens < 0:
        raise _invalid(f"{field}.max_tokens", "must not be negative")
    if params.HasField("repetition_penalty") and not -2 <= params.repetition_penalty <= 2:
        raise _invalid(
            f"{field}.repetition_penalty",
            f"must be between -2 and 2 (got {params.repetition_penalty}): the model takes it "
            "as its frequency_penalty",
        )
    top_p = params.strategy.top_p_sampling
    if top_p.HasField("temperature"):
        check_temperature(top_p.temperature, f"{field}.strategy.temperature")
    if top_p.HasField("top_p"):
        check_top_p(top_p.top_p, f"{field}.strategy.top_p")
    if (
        params.strategy.WhichOneof("strategy") == "top_k_sampling"
        and params.strategy.top_k_sampling.top_k < 1
    ):
        raise _invalid(f"{field}.strategy.top_k", "must be at least 1")


def check_tool_config(tool_config: agents_pb2.ToolConfig, field: str) -> None:
    """Its formats are llama-stack's values (a model of the mesh reads tools as JSON
    whatever they say, but a value no llama-stack takes is a mistake to name)."""
    if tool_config.HasField("tool_prompt_format"):
        _check_one_of(
            tool_config.tool_prompt_format, TOOL_PROMPT_FORMATS, f"{field}.tool_prompt_format"
        )
    if tool_config.HasField("system_message_behavior"):
        _check_one_of(
            tool_config.system_message_behavior,
            SYSTEM_MESSAGE_BEHAVIORS,
            f"{field}.system_message_behavior",
        )


def _check_one_of(value: str, allowed: tuple[str, ...], field: str) -> None:
    if value not in allowed:
        raise _invalid(field, f"{value!r} is not one of {list(allowed)}")


def check_object_schema(schema: dict[str, Any], field: str) -> None:
    """The JSON Schema of an object, as models take a tool's parameters or a structured
    answer's format: what else was stored, and failed each turn at the model."""
    if schema.get("type", "object") != "object":
        raise _invalid(
            field, f"the JSON Schema of an object ('type': 'object'), not {schema['type']!r}"
        )
    if not isinstance(schema.get("properties", {}), dict):
        raise _invalid(f"{field}.properties", "an object of the properties' schemas")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise _invalid(f"{field}.required", "a list of property names")


def check_temperature(value: float, field: str) -> None:
    """A temperature the OpenAI-compatible chat API takes (NaN is out of range too)."""
    if not 0 <= value <= 2:
        raise _invalid(field, f"must be between 0 and 2 (got {value})")


def check_top_p(value: float, field: str) -> None:
    if not 0 < value <= 1:
        raise _invalid(field, f"must be in (0, 1] (got {value})")


def check_tool_name(name: str, field: str) -> None:
    if not TOOL_NAME.fullmatch(name):
        raise _invalid(field, f"{name!r} is not a tool name (1-64 of A-Z, a-z, 0-9, _ and -)")


def _check_client_tools(config: agents_pb2.AgentConfig, field: str) -> set[str]:
    names: set[str] = set()
    for index, tool in enumerate(config.client_tools):
        where = f"{field}[{index}]"
        check_tool_name(tool.name, f"{where}.name")
        if tool.name in names:
            raise _invalid(f"{where}.name", f"two client tools are named {tool.name!r}")
        names.add(tool.name)
        if tool.HasField("tool_prompt_format"):
            _check_one_of(
                tool.tool_prompt_format, TOOL_PROMPT_FORMATS, f"{where}.tool_prompt_format"
            )
        seen: set[str] = set()
        for p_index, parameter in enumerate(tool.parameters):
            p_where = f"{where}.parameters[{p_index}]"
            if not parameter.name or parameter.name in seen:
                raise _invalid(f"{p_where}.name", f"{parameter.name!r} is empty or used twice")
            seen.add(parameter.name)
            if parameter.parameter_type.lower() not in PARAMETER_TYPES:
                raise _invalid(
                    f"{p_where}.parameter_type",
                    f"{parameter.parameter_type!r} is not one of {sorted(set(PARAMETER_TYPES))}",
                )
    return names


# -- reading a configuration (the built-in agent service) ---------------------------


def max_infer_iters(config: agents_pb2.AgentConfig) -> int:
    return config.max_infer_iters if config.HasField("max_infer_iters") else DEFAULT_MAX_INFER_ITERS


def tool_choice(config: agents_pb2.AgentConfig, turn: agents_pb2.ToolConfig | None = None) -> str:
    """ "auto", "required", "none" or a tool's name: the turn's, else the agent's."""
    for source in (turn, config.tool_config):
        if source is not None and source.HasField("tool_choice") and source.tool_choice:
            return source.tool_choice
    return config.tool_choice if config.HasField("tool_choice") and config.tool_choice else "auto"


def parameters_schema(tool: agents_pb2.ToolDef) -> dict[str, Any]:
    """The JSON Schema of a client tool's arguments, from its parameter list."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in tool.parameters:
        schema: dict[str, Any] = {"type": PARAMETER_TYPES[parameter.parameter_type.lower()]}
        if parameter.description:
            schema["description"] = parameter.description
        if parameter.HasField("default") and parameter.default.WhichOneof("kind") != "null_value":
            schema["default"] = json_format.MessageToDict(parameter.default)
        properties[parameter.name] = schema
        if not parameter.HasField("required") or parameter.required:
            required.append(parameter.name)
    return {"type": "object", "properties": properties, "required": required}


def sampling_kwargs(config: agents_pb2.AgentConfig) -> dict[str, Any]:
    """What the OpenAI-compatible chat API takes for these sampling parameters."""
    params = config.sampling_params
    out: dict[str, Any] = {}
    strategy = params.strategy.WhichOneof("strategy")
    if strategy == "greedy":
        out["temperature"] = 0.0
    elif strategy == "top_p_sampling":
        top_p = params.strategy.top_p_sampling
        if top_p.HasField("temperature"):
            out["temperature"] = top_p.temperature
        if top_p.HasField("top_p"):
            out["top_p"] = top_p.top_p
    elif strategy == "top_k_sampling":
        out["top_k"] = params.strategy.top_k_sampling.top_k
    if params.HasField("max_tokens") and params.max_tokens > 0:
        out["max_tokens"] = params.max_tokens
    if params.HasField("repetition_penalty") and params.repetition_penalty != 1.0:
        out["frequency_penalty"] = params.repetition_penalty
    if params.stop:
        out["stop"] = list(params.stop)
    return out
