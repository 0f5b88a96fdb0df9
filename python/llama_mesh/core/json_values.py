"""JSON values <-> google.protobuf.Struct / Value.

Struct stores every number as a double; JSON written by people means 1 when it says
1. Integral numbers within the exact range of a double come back as int. A Struct's
fields are a protobuf map, whose order varies from process to process: they come back
sorted by key, so the same value always prints the same.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import json_format, struct_pb2

from llama_mesh.core.errors import InvalidArgumentError

_EXACT = 2**53


def to_python(message: struct_pb2.Struct | struct_pb2.Value) -> Any:
    """A Struct or Value as Python JSON values.

    Read field by field rather than through json_format.MessageToDict, which costs
    several times as much: every event of every task is read this way.
    """
    if message.DESCRIPTOR.full_name == "google.protobuf.Struct":
        return _struct(message)
    return _value(message)


def _struct(message: Any) -> dict[str, Any]:
    fields = message.fields
    return {k: _value(fields[k]) for k in sorted(fields)}


def _value(message: Any) -> Any:
    kind = message.WhichOneof("kind")
    if kind == "string_value":
        return message.string_value
    if kind == "number_value":
        number: float = message.number_value
        if number.is_integer() and abs(number) <= _EXACT:
            return int(number)
        if math.isinf(number) or math.isnan(number):
            # As json_format: JSON has no such number (nor would it read back).
            raise ValueError(f"Fail to serialize {number} for Value.number_value")
        return number
    if kind == "bool_value":
        return message.bool_value
    if kind == "struct_value":
        return _struct(message.struct_value)
    if kind == "list_value":
        return [_value(v) for v in message.list_value.values]
    return None  # null_value, or no kind set


def to_struct(data: dict[str, Any], what: str = "input") -> struct_pb2.Struct:
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{what} must be a JSON object, not {type(data).__name__}")
    struct = struct_pb2.Struct()
    try:
        # Struct.update costs a fraction of json_format.ParseDict...
        struct.update(data)
        return struct
    except (TypeError, ValueError):
        pass
    try:
        # ...whose error names the value that is not JSON, and where it is.
        return json_format.ParseDict(data, struct_pb2.Struct())
    except (json_format.ParseError, TypeError, ValueError) as err:
        raise InvalidArgumentError(f"{what} is not JSON: {err}") from err


def to_value(data: Any, what: str = "value") -> struct_pb2.Value:
    try:
        return json_format.ParseDict(data, struct_pb2.Value())
    except (json_format.ParseError, TypeError, ValueError) as err:
        raise InvalidArgumentError(f"{what} is not JSON: {err}") from err
