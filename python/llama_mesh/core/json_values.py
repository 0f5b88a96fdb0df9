"""JSON values <-> google.protobuf.Struct / Value.

Struct stores every number as a double; JSON written by people means 1 when it says
1. Integral numbers within the exact range of a double come back as int. A Struct's
fields are a protobuf map, whose order varies from process to process: they come back
sorted by key, so the same value always prints the same.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2

from llama_mesh.core.errors import InvalidArgumentError

_EXACT = 2**53


def _restore_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    if isinstance(value, dict):
        return {k: _restore_ints(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_restore_ints(v) for v in value]
    return value


def to_python(message: struct_pb2.Struct | struct_pb2.Value) -> Any:
    """A Struct or Value as Python JSON values."""
    return _restore_ints(json_format.MessageToDict(message))


def to_struct(data: dict[str, Any], what: str = "input") -> struct_pb2.Struct:
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{what} must be a JSON object, not {type(data).__name__}")
    try:
        return json_format.ParseDict(data, struct_pb2.Struct())
    except (json_format.ParseError, TypeError, ValueError) as err:
        raise InvalidArgumentError(f"{what} is not JSON: {err}") from err


def to_value(data: Any, what: str = "value") -> struct_pb2.Value:
    try:
        return json_format.ParseDict(data, struct_pb2.Value())
    except (json_format.ParseError, TypeError, ValueError) as err:
        raise InvalidArgumentError(f"{what} is not JSON: {err}") from err
