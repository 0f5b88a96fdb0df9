"""JSON in the shape a file or service declares (llama_mesh/v1/http_options.proto).

Responses start as proto3 JSON from `google.protobuf.json_format` (with proto field
names when the style says so, defaults shown); `Shaper.to_json` then walks the message
descriptor beside the JSON and applies the rest of the style: `null` for unset fields
with presence, int64 as numbers, short enum names, `json_enum_value`s, and each
`json_discriminator` oneof written inline (its member's fields next to the
discriminator key). `Shaper.request_doc` does the reverse on a request's JSON, so that
`json_format.ParseDict` reads it. Messages that need none of this are left alone, so
the default style costs nothing.

>>> shaper = Shaper(options, Style(proto_field_names=True, short_enum_names=True))
... # doctest: +SKIP
>>> shaper.to_json(step)  # doctest: +SKIP
{'step_id': 's1', 'step_type': 'inference', 'model_response': {'role': 'assistant', ...}}
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from google.protobuf import message
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool

from llama_mesh_gateway.message_dict import message_dict
from llama_mesh_gateway.options import Options, Style
from llama_mesh_gateway.status import invalid_argument

_T = FieldDescriptor
_INT64 = frozenset(
    {_T.TYPE_INT64, _T.TYPE_UINT64, _T.TYPE_SINT64, _T.TYPE_FIXED64, _T.TYPE_SFIXED64}
)
# Messages with a JSON form of their own: never walked into.
_WKT_PREFIX = "google.protobuf."


class ShapeError(ValueError):
    """A message's http options cannot be applied (found when the routes are built)."""


def _upper_snake(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", "_", name).upper()


@dataclass
class _Enum:
    """JSON names of one enum's values, both ways."""

    out: dict[str, str | None]
    into: dict[str, str]


@dataclass
class _Plan:
    """What to do with the JSON of one message type."""

    keys: dict[str, str]  # field name -> output key
    by_key: dict[str, FieldDescriptor]  # proto and JSON names -> field
    nullable: frozenset[str]  # fields written as null when unset
    own: frozenset[str] = frozenset()  # proto and JSON names outside the tagged oneof
    discriminator: str = ""
    members: dict[str, FieldDescriptor] = field(default_factory=dict)  # tag -> member
    tags: dict[str, str] = field(default_factory=dict)  # member name -> tag


@dataclass
class _OutStep:
    """What `Shaper._out` does with one field's JSON."""

    nullable: bool = False  # written as null when unset
    convert: Callable[[Any], Any] | None = None  # None: the value as it is
    tag: str = ""  # a json_discriminator member: its tag, the key, its type
    discriminator: str = ""
    member: Descriptor | None = None


def _type(f: FieldDescriptor) -> Descriptor:
    """The message type of a message field."""
    return cast(Descriptor, f.message_type)


def _map_value(f: FieldDescriptor) -> FieldDescriptor:
    """The value field of a map field's entry."""
    return _type(f).fields_by_name["value"]


def _is_message(f: FieldDescriptor) -> bool:
    return f.message_type is not None and not f.message_type.full_name.startswith(_WKT_PREFIX)


def _is_map(f: FieldDescriptor) -> bool:
    return f.message_type is not None and f.message_type.GetOptions().map_entry


class Shaper:
    """Writes and reads the JSON of one pool's messages under one style."""

    def __init__(
        self,
        pool: DescriptorPool,
        options: Options,
        style: Style,
        synthetic_oneofs: frozenset[str] = frozenset(),
    ) -> None:
        self.pool = pool
        self.options = options
        self.style = style
        self._synthetic = synthetic_oneofs
        self._needs: dict[str, bool] = {}
        self._plans: dict[str, _Plan] = {}
        self._enums: dict[str, _Enum] = {}
        self._steps: dict[str, list[tuple[str, _OutStep]]] = {}

    # -- what needs shaping ------------------------------------------------------

    def needs(self, desc: Descriptor) -> bool:
        """Whether JSON of `desc` differs from proto3 JSON.

        The first call for a type also plans every message type it reaches, so that
        options which cannot apply fail when the routes are built, not per request.
        """
        cached = self._needs.get(desc.full_name)
        if cached is None:
            local = [self._local_need(d) for d in self._reachable(desc)]
            cached = self.style.shapes_json or any(local)
            self._needs[desc.full_name] = cached
        return cached

    def _reachable(self, root: Descriptor) -> list[Descriptor]:
        """Every message type reachable from `root` through fields (WKTs excluded)."""
        seen: dict[str, Descriptor] = {}
        stack = [root]
        while stack:
            desc = stack.pop()
            if desc.full_name in seen:
                continue
            seen[desc.full_name] = desc
            for f in desc.fields:
                inner = _map_value(f) if _is_map(f) else f
                if inner.message_type is not None and _is_message(inner):
                    stack.append(inner.message_type)
        return list(seen.values())

    def _local_need(self, desc: Descriptor) -> bool:
        plan = self.plan(desc)
        return bool(plan.discriminator) or any(
            self.enum(f.enum_type).out for f in desc.fields if f.enum_type is not None
        )

    def plan(self, desc: Descriptor) -> _Plan:
        """The plan of a message type (raises ShapeError for options that cannot apply)."""
        plan = self._plans.get(desc.full_name)
        if plan is None:
            plan = self._make_plan(desc)
            self._plans[desc.full_name] = plan
        return plan

    def _make_plan(self, desc: Descriptor) -> _Plan:
        use_proto = self.style.proto_field_names
        keys = {f.name: f.name if use_proto else f.json_name for f in desc.fields}
        by_key: dict[str, FieldDescriptor] = {}
        for f in desc.fields:
            by_key[f.json_name] = f
            by_key[f.name] = f
        nullable = frozenset(
            f.name
            for f in desc.fields
            if self.style.null_for_unset
            and f.has_presence
            and (f.containing_oneof is None or self._is_synthetic(f))
        )
        plan = _Plan(keys, by_key, nullable)
        oneofs = [(o, self.options.discriminator(o)) for o in desc.oneofs]
        tagged = [(o, key) for o, key in oneofs if key]
        if len(tagged) > 1:
            raise ShapeError(f"{desc.full_name}: more than one json_discriminator oneof")
        if tagged:
            oneof, key = tagged[0]
            self._plan_discriminator(desc, plan, oneof.fields, key)
        return plan

    def _plan_discriminator(self, desc: Descriptor, plan: _Plan, members: Any, key: str) -> None:
        plan.discriminator = key
        outside = [f for f in desc.fields if f not in members]
        plan.own = frozenset(n for f in outside for n in (f.name, f.json_name))
        own = {plan.keys[f.name] for f in outside}
        if key in own:
            raise ShapeError(f"{desc.full_name}: json_discriminator {key!r} is also a field")
        for member in members:
            kind = member.message_type.full_name if member.message_type is not None else ""
            if not kind or (kind.startswith(_WKT_PREFIX) and kind != "google.protobuf.Empty"):
                raise ShapeError(
                    f"{desc.full_name}.{member.name}: a json_discriminator member must be a message"
                )
            tag = self.options.tag(member)
            if tag in plan.members:
                raise ShapeError(f"{desc.full_name}: json_tag {tag!r} is used twice")
            plan.members[tag] = member
            plan.tags[member.name] = tag
            inner = member.message_type
            use_proto = self.style.proto_field_names
            clash = {f.name if use_proto else f.json_name for f in inner.fields} & (own | {key})
            if clash:
                raise ShapeError(
                    f"{desc.full_name}.{member.name}: fields {sorted(clash)} of "
                    f"{inner.full_name} clash with the containing message"
                )

    def _is_synthetic(self, f: FieldDescriptor) -> bool:
        oneof = f.containing_oneof
        return oneof is not None and oneof.full_name in self._synthetic

    def enum(self, desc: EnumDescriptor) -> _Enum:
        """The JSON names of an enum's values (empty maps: proto3 names)."""
        names = self._enums.get(desc.full_name)
        if names is None:
            out: dict[str, str | None] = {}
            into: dict[str, str] = {}
            prefix = _upper_snake(desc.name) + "_"
            for v in desc.values:
                custom = self.options.enum_value_name(v)
                if custom:
                    name: str | None = custom
                elif self.style.short_enum_names:
                    short = v.name[len(prefix) :] if v.name.startswith(prefix) else v.name
                    name = None if v.number == 0 else short.lower()
                else:
                    continue
                out[v.name] = name
                if name is not None:
                    into[name] = v.name
            names = _Enum(out, into)
            self._enums[desc.full_name] = names
        return names

    # -- responses ---------------------------------------------------------------

    def to_json(self, msg: message.Message) -> Any:
        """The JSON value of a message under this style."""
        value = message_dict(msg, self.pool, proto_field_names=self.style.proto_field_names)
        desc = cast(Descriptor, msg.DESCRIPTOR)
        if desc.full_name.startswith(_WKT_PREFIX) or not self.needs(desc):
            return value
        return self._out(desc, value)

    def _out(self, desc: Descriptor, obj: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, step in self._out_steps(desc):
            if step.member is not None:
                if key in obj:
                    out[step.discriminator] = step.tag
                    out.update(self._out(step.member, obj[key]))
            elif key in obj:
                value = obj[key]
                out[key] = value if step.convert is None else step.convert(value)
            elif step.nullable:
                out[key] = None
        return out

    def _out_steps(self, desc: Descriptor) -> list[tuple[str, _OutStep]]:
        """What `_out` does with each field of `desc`, in field order (planned once:
        the gateway shapes every message of a streamed turn)."""
        steps = self._steps.get(desc.full_name)
        if steps is None:
            plan = self.plan(desc)
            steps = []
            for f in desc.fields:
                step = _OutStep(nullable=f.name in plan.nullable)
                if f.name in plan.tags:
                    step.tag, step.discriminator = plan.tags[f.name], plan.discriminator
                    step.member = _type(f)
                else:
                    step.convert = self._value_out(f)
                steps.append((plan.keys[f.name], step))
            self._steps[desc.full_name] = steps
        return steps

    def _value_out(self, f: FieldDescriptor) -> Callable[[Any], Any] | None:
        """The conversion of a field's JSON value (None: it is written as it is)."""
        if _is_map(f):
            entry = self._single_out(_map_value(f))
            if entry is None:
                return None
            return lambda value: {k: entry(v) for k, v in value.items()}
        single = self._single_out(f)
        if single is None or not f.is_repeated:
            return single
        return lambda value: [single(v) for v in value]

    def _single_out(self, f: FieldDescriptor) -> Callable[[Any], Any] | None:
        if f.message_type is not None:
            if not _is_message(f) or not self.needs(_type(f)):
                return None
            inner = _type(f)
            return lambda value: self._out(inner, value) if isinstance(value, dict) else value
        if f.enum_type is not None:
            names = self.enum(f.enum_type).out
            if not names:
                return None
            return lambda value: names.get(value, value) if isinstance(value, str) else value
        if f.type in _INT64 and self.style.int64_as_number:
            return lambda value: int(value) if isinstance(value, str) else value
        return None

    # -- requests ----------------------------------------------------------------

    def request_doc(self, desc: Descriptor, value: Any) -> Any:
        """A request's JSON for `desc`, rewritten into proto3 JSON for ParseDict."""
        if not isinstance(value, dict) or not self.needs(desc):
            return value
        return self._in(desc, value)

    def _in(self, desc: Descriptor, obj: dict[str, Any]) -> dict[str, Any]:
        plan = self.plan(desc)
        obj = dict(obj)
        if plan.discriminator and plan.discriminator in obj:
            tag = obj.pop(plan.discriminator)
            member = plan.members.get(tag) if isinstance(tag, str) else None
            if member is None:
                allowed = ", ".join(repr(t) for t in plan.members)
                raise invalid_argument(
                    f"{desc.full_name}: {plan.discriminator} {tag!r} is not one of {allowed}"
                )
            member_type = _type(member)
            inner_names = set(member_type.fields_by_name) | {
                f.json_name for f in member_type.fields
            }
            inner = {k: obj.pop(k) for k in list(obj) if k in inner_names and k not in plan.own}
            obj[member.name] = inner
        for key, value in list(obj.items()):
            f = plan.by_key.get(key)
            if f is None:
                continue
            if value is None:
                if f.is_repeated:  # maps too: null is "none", which ParseDict refuses
                    del obj[key]
                continue
            obj[key] = self._value_in(f, value)
        return obj

    def _value_in(self, f: FieldDescriptor, value: Any) -> Any:
        if _is_map(f):
            inner = _map_value(f)
            if isinstance(value, dict):
                return {k: self._single_in(inner, v) for k, v in value.items()}
            return value
        if f.is_repeated and isinstance(value, list):
            return [self._single_in(f, v) for v in value]
        return self._single_in(f, value)

    def _single_in(self, f: FieldDescriptor, value: Any) -> Any:
        if f.message_type is not None:
            if _is_message(f) and isinstance(value, dict) and self.needs(_type(f)):
                return self._in(_type(f), value)
            return value
        if f.enum_type is not None and isinstance(value, str):
            return self.enum(f.enum_type).into.get(value, value)
        return value

    def enum_text(self, f: FieldDescriptor, text: str) -> str:
        """A query or path value for an enum field, as proto3 JSON reads it."""
        if f.enum_type is None:
            return text
        return self.enum(f.enum_type).into.get(text, text)
