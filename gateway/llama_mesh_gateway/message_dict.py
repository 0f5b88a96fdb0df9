"""A message as a JSON value, with every google.protobuf.Struct's keys sorted.

A Struct's fields are a protobuf map, which upb iterates in an order seeded per
process: the same event printed by two gateway processes listed its keys in two
orders. JSON clients must not care, but people, diffs and caches do. Sorted is the
one order that is the same everywhere, and the one the Python client uses.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, message
from google.protobuf.descriptor_pool import DescriptorPool

_JSON_TYPES = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
_WKT_PREFIX = "google.protobuf."


def message_dict(
    msg: message.Message, pool: DescriptorPool, *, proto_field_names: bool = False
) -> Any:
    """Proto3 canonical JSON (defaults shown), Struct keys in sorted order."""
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
