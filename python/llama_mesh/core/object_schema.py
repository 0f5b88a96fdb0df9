"""Checking a JSON object against the JSON Schema a service published for it (a task's
input, an answer sent into a waiting task), before the mesh accepts it.

Only what a workflow's event or start-event class says: the fields it requires (all of
them, or those of one of several alternatives: an ``anyOf`` of ``required`` lists), the
JSON types of the fields it declares, and, when it allows no others, unknown fields.
The message names each field, so a person can correct what they sent.

    check_object({"answer": "yes"}, schema, "payload", "event HumanResponseEvent")
    # InvalidArgumentError: payload lacks required field(s) ['response'] of event
    #   HumanResponseEvent (it has ['answer'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_mesh.core.errors import InvalidArgumentError

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int, float),  # a whole JSON number; from a Struct it is a float
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def check_object(
    value: Mapping[str, Any],
    schema: Mapping[str, Any],
    field: str,
    what: str,
    *,
    types: bool = True,
) -> None:
    """InvalidArgumentError if `value` (a JSON object) does not fit `schema`; with
    `types` False only the fields themselves are checked, not their JSON types."""
    properties: Mapping[str, Any] = schema.get("properties") or {}
    missing = [k for k in schema.get("required") or [] if k not in value]
    if missing:
        raise InvalidArgumentError(
            f"{field} lacks required field(s) {missing} of {what} (it has {sorted(value)})"
        )
    if schema.get("additionalProperties") is False:
        unknown = sorted(k for k in value if k not in properties)
        if unknown:
            raise InvalidArgumentError(
                f"{field} has unknown field(s) {unknown}; {what} accepts {sorted(properties)}"
            )
    alternatives = _alternatives(schema)
    if alternatives and not any(all(k in value for k in fields) for fields in alternatives):
        needed = " or ".join(" and ".join(repr(k) for k in fields) for fields in alternatives)
        raise InvalidArgumentError(
            f"{field} lacks {needed}: {what} needs one of them (it has {sorted(value)})"
        )
    for key, item in value.items() if types else ():
        expected = _types(properties.get(key))
        if expected and not _fits(item, expected):
            raise InvalidArgumentError(
                f"{field}.{key} must be {' or '.join(expected)} for {what} (got {_json_type(item)})"
            )


def _alternatives(schema: Mapping[str, Any]) -> list[list[str]]:
    """The field lists of which a value must have one (an ``anyOf`` whose options each
    say only what is required); [] when the schema has none, or says more there."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or not options:
        return []
    found: list[list[str]] = []
    for option in options:
        if not isinstance(option, Mapping) or set(option) != {"required"}:
            return []
        required = option["required"]
        if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
            return []
        found.append(required)
    return found


def _types(prop: Any) -> list[str]:
    """The JSON types a property allows, [] when the schema does not say or says
    something this check does not read (refs, combinations)."""
    if not isinstance(prop, Mapping):
        return []
    declared = prop.get("type")
    if isinstance(declared, str):
        found = [declared]
    elif isinstance(declared, list):
        found = [t for t in declared if isinstance(t, str)]
    else:
        options = prop.get("anyOf")
        if not isinstance(options, list):
            return []
        found = []
        for option in options:
            more = _types(option)
            if not more:
                return []  # an option of any type: anything goes
            found.extend(more)
    return [t for t in found if t in _JSON_TYPES]


def _fits(item: Any, expected: list[str]) -> bool:
    for name in expected:
        if isinstance(item, bool):  # a bool is an int in Python, not in JSON
            if name == "boolean":
                return True
        elif name == "integer":
            if isinstance(item, int | float) and float(item).is_integer():
                return True
        elif isinstance(item, _JSON_TYPES[name]):
            return True
    return False


def _json_type(item: Any) -> str:
    if isinstance(item, bool):
        return "boolean"
    for name in ("string", "number", "object", "array", "null"):
        if isinstance(item, _JSON_TYPES[name]):
            return name
    return type(item).__name__
