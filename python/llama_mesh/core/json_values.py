"""JSON values <-> google.protobuf.Struct / Value.

Struct stores every number as a double; JSON written by people means 1 when it says
1. Integral numbers within the exact range of a double come back as int. A Struct's
fields are a protobuf map, whose order varies from process to process: they come back
sorted by key, so the same value always prints the same.
"""

from __future__ import annotations

import math
import re
from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

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


_JSON_TYPES = frozenset(
    {"google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue"}
)
_HOLDS_JSON: dict[str, bool] = {}
# A double that is not finite has every exponent bit set. On the wire a Value's
# number_value is its tag (field 2, fixed64: 0x11) and the double's 8 bytes, little
# endian, so its last two bytes are 0xF_/0x7F or 0xFF. Any non-finite number in a
# message matches this in the message's bytes; other bytes may too (a string, another
# field 2), so a match only says that the walk must look.
_MAYBE_NON_FINITE = re.compile(rb"\x11.{6}[\xf0-\xff][\x7f\xff]", re.DOTALL)


def _holds_json(descriptor: Any) -> bool:
    """Whether a message of this type can hold a JSON value (Struct, Value, ListValue)
    at any depth; known per type after its first message."""
    name = descriptor.full_name
    known = _HOLDS_JSON.get(name)
    if known is not None:
        return known
    _HOLDS_JSON[name] = False  # a type that holds itself holds JSON only through others
    found = name in _JSON_TYPES or any(
        f.message_type is not None and _holds_json(f.message_type) for f in descriptor.fields
    )
    _HOLDS_JSON[name] = found
    return found


def check_finite(message: Message) -> None:
    """InvalidArgumentError naming the first JSON number in `message` (its Struct,
    Value and ListValue fields, at any depth) that is NaN or infinite.

    JSON has no such numbers: a Value holding one cannot be written as JSON (the
    gateway, the Python client and the workflows all read values as JSON), so it is
    refused as it comes in, not stored to fail every later reader.

    >>> check_finite(struct_pb2.Value(number_value=float("nan")))
    Traceback (most recent call last):
    ...
    llama_mesh.core.errors.InvalidArgumentError: value is NaN, which JSON cannot hold: ...
    """
    if not _holds_json(message.DESCRIPTOR):
        return
    # Serializing and searching run in C; the walk costs ~1 µs a value in Python (a
    # second of the event loop for a megabyte of JSON), so it runs only on a match.
    if _MAYBE_NON_FINITE.search(message.SerializeToString()) is None:
        return
    where = _non_finite(message, "")
    if where is not None:
        path, number = where
        field = path.lstrip(".")
        if not field or field.startswith("["):
            field = f"value{field}"  # the message is a Value or a ListValue
        raise InvalidArgumentError(
            f"{field} is {_json_name(number)}, which JSON cannot hold: send a finite number",
            field=field,
        )


def _json_name(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def _non_finite(message: Any, path: str) -> tuple[str, float] | None:
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Value":
        kind = message.WhichOneof("kind")
        if kind == "number_value":
            number: float = message.number_value
            return None if math.isfinite(number) else (path, number)
        if kind == "struct_value":
            return _non_finite(message.struct_value, path)
        if kind == "list_value":
            return _non_finite(message.list_value, path)
        return None
    if name == "google.protobuf.Struct":
        for key, value in message.fields.items():
            found = _non_finite(value, f"{path}.{key}")
            if found is not None:
                return found
        return None
    if name == "google.protobuf.ListValue":
        for index, value in enumerate(message.values):
            found = _non_finite(value, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    for field, value in message.ListFields():
        kind = field.message_type
        if kind is None or not _holds_json(kind):
            continue
        here = f"{path}.{field.name}"
        if kind.GetOptions().map_entry:
            items = [(f"{here}[{k!r}]", v) for k, v in value.items()]
        elif field.is_repeated:
            items = [(f"{here}[{i}]", v) for i, v in enumerate(value)]
        else:
            items = [(here, value)]
        for item_path, item in items:
            found = _non_finite(item, item_path)
            if found is not None:
                return found
    return None
