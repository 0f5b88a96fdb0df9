"""HTTP request -> gRPC request message, gRPC response message -> JSON.

The request message is built in three steps, later steps winning on conflicts:

1. the body, per the rule's `body`: `"*"` maps the JSON object onto the whole request,
   `"field"` maps the JSON value onto that top-level field, `""` takes no body;
2. the path variables, by field path (`task.name`), converted from their string form;
3. the query parameters, for fields bound by neither path nor body. A parameter names a
   field by a dotted path whose parts are proto names or JSON names; a repeated
   primitive takes repeated keys (`states=A&states=B`); Timestamp, Duration, FieldMask
   and the wrappers take their JSON string form. Unknown parameters are an error that
   names them.

Everything goes through `google.protobuf.json_format` (proto3 canonical JSON), so
int64 accepts numbers and strings, enums accept names and numbers, bytes take base64.

>>> from llama_mesh_gateway.message_dict import message_dict
from llama_mesh_gateway.routes import RouteTable, Schema
>>> schema = Schema.load()
>>> match = RouteTable(schema.routes()).find("GET", "/v1/sessions/s1/tasks")
>>> req = build_request(match, b"", [("states", "TASK_STATE_RUNNING")], schema.pool)
>>> req.parent, list(req.states)
('sessions/s1', [2])
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any, cast

from google.protobuf import json_format, message
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool

from llama_mesh_gateway.message_dict import message_dict
from llama_mesh_gateway.routes import Match, Route, resolve_field_path
from llama_mesh_gateway.status import invalid_argument

#: Message types that a single query parameter or path variable can set from a string.
STRING_WKT = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.DoubleValue",
        "google.protobuf.FloatValue",
        "google.protobuf.Int64Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.Int32Value",
        "google.protobuf.UInt32Value",
        "google.protobuf.BoolValue",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
    }
)

_PARSE_ERRORS = (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError)


def build_request(
    match: Match,
    body: bytes,
    query: Sequence[tuple[str, str]],
    pool: DescriptorPool,
    *,
    overrides: dict[str, str] | None = None,
) -> message.Message:
    """The request message of a matched route; raises GatewayError (400) on bad input.

    `overrides` are set last, by proto field name, from strings (the gateway maps the
    `Last-Event-ID` header to `after_sequence` this way).
    """
    route = match.route
    req = route.request_class()
    if route.body:
        _parse_body(route, body, req, pool)
    for field_path, value in match.bindings.items():
        what = f"path variable {field_path}"
        _merge_string(req, field_path.split("."), [value], pool, what=what, route=route)
    _merge_query(route, query, req, pool)
    for name, value in (overrides or {}).items():
        _merge_string(req, [name], [value], pool, what=name)
    return req


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _double(text: str) -> float:
    # A number protobuf can hold: JSON numbers become doubles (Value) or integers that
    # fit one; Python's json would give inf, which no JSON document carries back.
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text[:40]} is out of the range of a JSON number")
    return number


def _integer(text: str) -> int:
    number = int(text)
    try:
        float(number)
    except OverflowError:
        raise ValueError(f"{text[:40]}… is out of the range of a JSON number") from None
    return number


def parse_json(body: bytes) -> Any:
    """A JSON document from bytes; GatewayError (400) naming what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid_argument(f"request body is not UTF-8: {e}") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_not_json,
            parse_float=_double,
            parse_int=_integer,
        )
    except json.JSONDecodeError as e:
        raise invalid_argument(f"malformed JSON in request body: {e}") from None
    except (ValueError, RecursionError) as e:
        raise invalid_argument(f"invalid JSON in request body: {e}") from None


def _parse_body(route: Route, body: bytes, req: message.Message, pool: DescriptorPool) -> None:
    if not body.strip():
        return  # an empty body is an empty message
    value = parse_json(body)
    shaper = route.shaper
    if route.body == "*":
        if not isinstance(value, dict):
            name = req.DESCRIPTOR.full_name
            raise invalid_argument(f"request body must be a JSON object ({name})")
        desc = cast(Descriptor, req.DESCRIPTOR)
        doc: dict[str, Any] = value if shaper is None else shaper.request_doc(desc, value)
    else:
        field = req.DESCRIPTOR.fields_by_name[route.body]
        if shaper is not None and field.message_type is not None and not _is_repeated(field):
            value = shaper.request_doc(cast(Descriptor, field.message_type), value)
        doc = {route.body: value}
    try:
        json_format.ParseDict(doc, req, descriptor_pool=pool)
    except _PARSE_ERRORS as e:
        raise invalid_argument(f"invalid request body: {e}") from None


def _merge_query(
    route: Route, query: Sequence[tuple[str, str]], req: message.Message, pool: DescriptorPool
) -> None:
    grouped: dict[str, list[str]] = {}
    for key, value in query:
        # `tags[]=a&tags[]=b` is how clients with a "brackets" array format repeat a key.
        grouped.setdefault(key.removesuffix("[]"), []).append(value)
    if not grouped:
        return
    unknown: list[str] = []
    resolved: list[tuple[str, list[str], list[str]]] = []
    for key, values in grouped.items():
        names = _resolve(req.DESCRIPTOR, key.split("."))
        if names is None or not _queryable(route, names):
            unknown.append(key)
        else:
            resolved.append((key, names, values))
    if unknown:
        raise invalid_argument(
            "unknown query parameters: "
            + ", ".join(sorted(unknown))
            + f" (not fields of {req.DESCRIPTOR.full_name} outside the path and body)"
        )
    commas = route.style.comma_separated_query_arrays
    for key, names, values in resolved:
        field = resolve_field_path(cast(Descriptor, req.DESCRIPTOR), names)
        if commas and field is not None and _is_repeated(field):
            values = [part for v in values for part in v.split(",")]
        _merge_string(req, names, values, pool, what=f"query parameter {key}", route=route)


def _resolve(desc: Any, parts: Sequence[str]) -> list[str] | None:
    """Proto names of a dotted path whose parts are proto or JSON names."""
    names: list[str] = []
    current: Descriptor | None = desc
    for part in parts:
        if current is None:
            return None
        found = current.fields_by_name.get(part)
        if found is None:
            found = next((f for f in current.fields if f.json_name == part), None)
        if found is None:
            return None
        names.append(found.name)
        is_msg = found.type == FieldDescriptor.TYPE_MESSAGE
        current = found.message_type if is_msg and not _is_repeated(found) else None
    return names


def _queryable(route: Route, names: list[str]) -> bool:
    if route.body == "*" or (route.body and names[0] == route.body):
        return False
    path = tuple(names)
    return not any(path[: len(b)] == b or b[: len(path)] == path for b in route.bound_paths)


def _is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def _merge_string(
    req: message.Message,
    names: Sequence[str],
    values: list[str],
    pool: DescriptorPool,
    *,
    what: str,
    route: Route | None = None,
) -> None:
    field = resolve_field_path(cast(Descriptor, req.DESCRIPTOR), names)
    assert field is not None, names  # paths, query keys and overrides are resolved before
    repeated = _is_repeated(field)
    if field.message_type is not None:
        type_name = field.message_type.full_name
        if repeated or type_name not in STRING_WKT:
            raise invalid_argument(
                f"{what}: field {'.'.join(names)} is a {type_name}; "
                "set its fields with dotted names instead"
            )
    if not repeated and len(values) > 1:
        raise invalid_argument(
            f"{what}: field {'.'.join(names)} takes one value, got {len(values)}"
        )
    if route is not None and route.shaper is not None and field.enum_type is not None:
        values = [route.shaper.enum_text(field, v) for v in values]
    converted = [_json_value(field, v, what) for v in values]
    doc: Any = converted if repeated else converted[0]
    for name in reversed(names):
        doc = {name: doc}
    scratch = req.__class__()
    try:
        json_format.ParseDict(doc, scratch, descriptor_pool=pool)
    except _PARSE_ERRORS as e:
        raise invalid_argument(f"{what}: {e}") from None
    req.MergeFrom(scratch)


_TRUE = frozenset({"true", "1", "t"})
_FALSE = frozenset({"false", "0", "f"})


def _json_value(field: FieldDescriptor, text: str, what: str) -> Any:
    """The JSON form of a string value for a field (only booleans need converting)."""
    is_bool = field.type == FieldDescriptor.TYPE_BOOL or (
        field.message_type is not None
        and field.message_type.full_name == "google.protobuf.BoolValue"
    )
    if not is_bool:
        return text
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise invalid_argument(f"{what}: {text!r} is not a boolean (true or false)")


def response_json(route: Route, msg: message.Message, pool: DescriptorPool) -> Any:
    """The JSON value of a response: the whole message, or its `response_body` field.
    Integral doubles are written as integers (`3`, not `3.0`), as Envoy's transcoder
    writes them: a Struct holds every number as a double, and `{"ticks": 3}` should come
    back as it went in."""
    if route.response_body:
        field = msg.DESCRIPTOR.fields_by_name[route.response_body]
        if field.message_type is not None and not _is_repeated(field):
            return integral(_json(route, getattr(msg, route.response_body), pool))
        key = field.name if route.style.proto_field_names else field.json_name
        return integral(_json(route, msg, pool).get(key))
    return integral(_json(route, msg, pool))


_EXACT = 2**53  # beyond this a double is not an exact integer any more


_WALKED = (float, dict, list)  # what `integral` changes or looks into


def integral(value: Any) -> Any:
    """`value` with every float that holds an exact integer made an int."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= _EXACT else value
    # Strings, ints, bools and None are kept without a call each.
    if isinstance(value, dict):
        return {k: integral(v) if isinstance(v, _WALKED) else v for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) if isinstance(v, _WALKED) else v for v in value]
    return value


def _json(route: Route, msg: message.Message, pool: DescriptorPool) -> Any:
    if route.shaper is None:
        return message_json(msg, pool)
    return route.shaper.to_json(msg)


def message_json(msg: message.Message, pool: DescriptorPool) -> Any:
    """Proto3 canonical JSON (JSON names, int64 as strings, enums by name, defaults shown)."""
    return message_dict(msg, pool)
