"""A message as a JSON value: proto3 canonical JSON, every google.protobuf.Struct's
keys sorted.

A Struct's fields are a protobuf map, which upb iterates in an order seeded per
process: the same event printed by two gateway processes listed its keys in two
orders. JSON clients must not care, but people, diffs and caches do. Sorted is the
one order that is the same everywhere, and the one the Python client uses.

The value is what ``json_format.MessageToDict(msg,
always_print_fields_with_no_presence=True)`` gives (keys in the same order: set
fields by number, then the unset fields without presence in declaration order),
written by converters planned once per message type instead of
``json_format``'s per-field dispatch: the gateway converts every message it relays,
and for a streamed agent turn that was a fifth of its CPU. What the plan does not
cover (``Any``, extensions, an enum number a closed enum does not define, a
non-finite number in a Value) goes through ``json_format`` itself, so its value and
its errors are json_format's. tests/gateway/test_message_dict.py compares the two
over every message type the gateway serves.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Callable
from typing import Any, cast

from google.protobuf import descriptor_pool, json_format, message
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.internal import type_checkers

_T = FieldDescriptor
_INT64 = frozenset({_T.CPPTYPE_INT64, _T.CPPTYPE_UINT64})
_WRAPPERS = frozenset(
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
)
_AS_STRING = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
_JSON_TYPES = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
_WKT_PREFIX = "google.protobuf."

Convert = Callable[[Any], Any]


class _Unplanned(Exception):
    """A value the plan does not cover: the message goes through json_format."""


def message_dict(
    msg: message.Message, pool: DescriptorPool, *, proto_field_names: bool = False
) -> Any:
    """Proto3 canonical JSON (defaults shown), Struct keys in sorted order."""
    writer = _writer(pool, proto_field_names)
    try:
        return writer.message(cast(Descriptor, msg.DESCRIPTOR))(msg)
    except (_Unplanned, ValueError):  # ValueError: an out-of-range Timestamp, say
        return _slow(msg, pool, proto_field_names)


# By pool and field-name style: a gateway has one pool. Bounded, since a writer keeps
# its pool alive (upb pools take no weak references) and tests make many.
_WRITERS: dict[tuple[int, bool], _Writer] = {}
_MAX_WRITERS = 8


def _writer(pool: DescriptorPool, proto_field_names: bool) -> _Writer:
    key = (id(pool), proto_field_names)
    writer = _WRITERS.get(key)
    if writer is None or writer.pool is not pool:
        while len(_WRITERS) >= _MAX_WRITERS:
            del _WRITERS[next(iter(_WRITERS))]  # the oldest
        writer = _WRITERS[key] = _Writer(pool, proto_field_names)
    return writer


class _Writer:
    """The converters of one pool's message types, under one field-name style."""

    def __init__(self, pool: DescriptorPool, proto_field_names: bool) -> None:
        self.pool = pool
        self.proto_field_names = proto_field_names
        self._messages: dict[str, Convert] = {}

    def message(self, desc: Descriptor) -> Convert:
        """The converter of a message type (planned on first use)."""
        convert = self._messages.get(desc.full_name)
        if convert is None:
            convert = self._plan(desc)
            self._messages[desc.full_name] = convert
        return convert

    def _plan(self, desc: Descriptor) -> Convert:
        name = desc.full_name
        if name == "google.protobuf.Struct":
            return _struct
        if name == "google.protobuf.Value":
            return _value
        if name == "google.protobuf.ListValue":
            return _list_value
        if name in _AS_STRING:
            return _to_json_string
        if name in _WRAPPERS:
            inner = _scalar(desc.fields_by_name["value"])
            return lambda msg: inner(msg.value)
        if name == "google.protobuf.Any":
            pool, names = self.pool, self.proto_field_names
            return lambda msg: _slow(msg, pool, names)
        return self._regular(desc)

    def _regular(self, desc: Descriptor) -> Convert:
        # Filled after this converter is registered, so that a message type that
        # contains itself (directly or not) finds it.
        by_field: dict[FieldDescriptor, tuple[str, Convert]] = {}
        defaults: list[tuple[str, Callable[[], Any]]] = []

        def convert(msg: message.Message) -> dict[str, Any]:
            js: dict[str, Any] = {}
            for f, value in msg.ListFields():
                try:
                    key, write = by_field[f]
                except KeyError:  # an extension
                    raise _Unplanned from None
                js[key] = write(value)
            for key, default in defaults:
                if key not in js:
                    js[key] = default()
            return js

        self._messages[desc.full_name] = convert
        for f in desc.fields:
            key = f.name if self.proto_field_names else f.json_name
            by_field[f] = (key, self._field(f))
            if not f.has_presence:
                defaults.append((key, _default(f)))
        return convert

    def _field(self, f: FieldDescriptor) -> Convert:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            entry = f.message_type
            value = self._single(entry.fields_by_name["value"])
            is_bool = entry.fields_by_name["key"].cpp_type == _T.CPPTYPE_BOOL
            return lambda m: {_map_key(k, is_bool): value(m[k]) for k in m}
        single = self._single(f)
        if f.is_repeated:
            return lambda items: [single(v) for v in items]
        return single

    def _single(self, f: FieldDescriptor) -> Convert:
        if f.cpp_type == _T.CPPTYPE_MESSAGE:
            return self.message(cast(Descriptor, f.message_type))
        return _scalar(f)


def _default(f: FieldDescriptor) -> Callable[[], Any]:
    """The JSON of an unset field without presence (a new list or dict each time)."""
    if f.is_repeated:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            return dict
        return list
    value = _scalar(f)(f.default_value)
    return lambda: value


def _map_key(key: Any, is_bool: bool) -> str:
    if is_bool:
        return "true" if key else "false"
    return str(key)


def _scalar(f: FieldDescriptor) -> Convert:
    """The converter of a scalar field's value, as json_format writes it."""
    cpp = f.cpp_type
    if cpp == _T.CPPTYPE_ENUM:
        enum = cast(EnumDescriptor, f.enum_type)
        if enum.full_name == "google.protobuf.NullValue":
            return lambda _: None
        if _enum_json_option() and any(v.GetOptions().ListFields() for v in enum.values):
            return _unplanned  # a value's option may give it another JSON name
        names = {v.number: v.name for v in enum.values}
        closed = enum.is_closed

        def enum_json(number: int) -> Any:
            found = names.get(number)
            if found is None:
                if closed:
                    raise _Unplanned
                return number
            return found

        return enum_json
    if cpp == _T.CPPTYPE_STRING:
        if f.type == _T.TYPE_BYTES:
            return lambda b: base64.b64encode(b).decode("utf-8")
        return str
    if cpp == _T.CPPTYPE_BOOL:
        return bool
    if cpp in _INT64:
        return str
    if cpp == _T.CPPTYPE_DOUBLE:
        return _double
    if cpp == _T.CPPTYPE_FLOAT:
        return _float
    return _same


@functools.cache
def _enum_json_option() -> bool:
    """Whether json_format would look for a JSON name in an enum value's options (it
    does when the `pb.enumvalue.json` extension is in the default pool)."""
    try:
        descriptor_pool.Default().FindExtensionByName("pb.enumvalue.json")
    except KeyError:
        return False
    return True


def _same(value: Any) -> Any:
    return value


def _unplanned(value: Any) -> Any:
    raise _Unplanned


def _non_finite(value: float) -> str | None:
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    if math.isnan(value):
        return "NaN"
    return None


def _double(value: float) -> Any:
    special = _non_finite(value)
    return value if special is None else special


def _float(value: float) -> Any:
    special = _non_finite(value)
    return type_checkers.ToShortestFloat(value) if special is None else special


def _to_json_string(msg: Any) -> str:
    return cast(str, msg.ToJsonString())


def _struct(msg: Any) -> dict[str, Any]:
    fields = msg.fields
    return {k: _value(fields[k]) for k in sorted(fields)}


def _list_value(msg: Any) -> list[Any]:
    return [_value(v) for v in msg.values]


def _value(msg: Any) -> Any:
    kind = msg.WhichOneof("kind")
    if kind == "string_value":
        return msg.string_value
    if kind == "number_value":
        number = msg.number_value
        if math.isinf(number) or math.isnan(number):
            raise _Unplanned  # json_format refuses it: its error, not ours
        return number
    if kind == "bool_value":
        return msg.bool_value
    if kind == "struct_value":
        return _struct(msg.struct_value)
    if kind == "list_value":
        return _list_value(msg.list_value)
    return None  # null_value, or no kind set


# -- json_format's way (what the plan does not cover) ------------------------------


def _slow(msg: message.Message, pool: DescriptorPool, proto_field_names: bool) -> Any:
    value = json_format.MessageToDict(
        msg,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=proto_field_names,
        descriptor_pool=pool,
    )
    return _ordered(msg, value, proto_field_names)


def _ordered(msg: message.Message, value: Any, proto_field_names: bool) -> Any:
    name = msg.DESCRIPTOR.full_name
    if name in _JSON_TYPES:
        return _sorted(value)
    if name.startswith(_WKT_PREFIX) or not isinstance(value, dict):
        return value
    for field, field_value in msg.ListFields():
        kind = field.message_type
        key = field.name if proto_field_names else field.json_name
        if kind is None or key not in value:
            continue
        if kind.GetOptions().map_entry:
            if kind.fields_by_name["value"].message_type is not None:
                entries = value[key]
                for k, v in field_value.items():
                    if str(k) in entries:
                        entries[str(k)] = _ordered(v, entries[str(k)], proto_field_names)
        elif field.is_repeated:
            value[key] = [
                _ordered(m, v, proto_field_names)
                for m, v in zip(field_value, value[key], strict=True)
            ]
        else:
            value[key] = _ordered(field_value, value[key], proto_field_names)
    return value


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value
