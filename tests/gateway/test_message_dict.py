"""message_dict writes what json_format writes (Struct keys sorted), key for key and in
the same order, for every message type the gateway serves: random messages of each
type, compared with json_format's own conversion."""

from __future__ import annotations

import json
import math
import random
import struct
from collections.abc import Iterator
from typing import Any, cast

import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool

from llama_mesh_gateway.message_dict import _slow, message_dict
from llama_mesh_gateway.routes import Schema

from .conftest import CompiledApi

_T = FieldDescriptor
SAMPLES = 12  # random messages per type and field-name style


def message_types(schema: Schema) -> Iterator[Descriptor]:
    def nested(desc: Descriptor) -> Iterator[Descriptor]:
        yield desc
        for inner in desc.nested_types:
            if not inner.GetOptions().map_entry:
                yield from nested(inner)

    for file in schema.file_set.file:
        found = schema.pool.FindFileByName(file.name)
        for desc in found.message_types_by_name.values():
            yield from nested(desc)


class Filler:
    """Sets a random selection of a message's fields to random values."""

    def __init__(self, rng: random.Random, pool: DescriptorPool) -> None:
        self.rng = rng
        self.pool = pool

    def fill(self, msg: Any, depth: int = 0) -> Any:
        name = msg.DESCRIPTOR.full_name
        if name == "google.protobuf.Struct":
            msg.update(self.json_object(depth))
            return msg
        if name == "google.protobuf.Value":
            json_format.ParseDict(self.json_value(depth), msg)
            return msg
        if name == "google.protobuf.ListValue":
            msg.extend(self.json_value(depth + 1) for _ in range(self.rng.randint(0, 3)))
            return msg
        if name == "google.protobuf.Timestamp":
            seconds = self.rng.randint(0, 4_000_000_000)
            msg.FromNanoseconds(seconds * 10**9 + self.rng.choice([0, 5]))
            return msg
        if name == "google.protobuf.Duration":
            msg.FromNanoseconds(self.rng.randint(-(10**12), 10**12))
            return msg
        if name == "google.protobuf.FieldMask":
            msg.paths.extend(self.rng.choice(["a", "b_c", "d.e_f"]) for _ in range(2))
            return msg
        if name == "google.protobuf.Any":
            if self.rng.random() < 0.5:
                inner = message_factory.GetMessageClass(
                    self.pool.FindMessageTypeByName("google.protobuf.Struct")
                )()
                msg.Pack(self.fill(inner, depth + 1))
            return msg
        for f in msg.DESCRIPTOR.fields:
            if self.rng.random() < 0.35:
                continue
            self.set(msg, f, depth)
        return msg

    def set(self, msg: Any, f: FieldDescriptor, depth: int) -> None:
        is_map = f.message_type is not None and f.message_type.GetOptions().map_entry
        if is_map:
            entry = cast(Descriptor, f.message_type)
            key_field = entry.fields_by_name["key"]
            value_field = entry.fields_by_name["value"]
            for _ in range(self.rng.randint(0, 3)):
                key = self.scalar(key_field)
                target = getattr(msg, f.name)
                if value_field.message_type is not None:
                    if depth < 3:
                        self.fill(target[key], depth + 1)
                else:
                    target[key] = self.scalar(value_field)
            return
        if f.message_type is not None:
            if depth >= 3:
                return
            if f.is_repeated:
                for _ in range(self.rng.randint(0, 2)):
                    self.fill(getattr(msg, f.name).add(), depth + 1)
            else:
                getattr(msg, f.name).SetInParent()
                self.fill(getattr(msg, f.name), depth + 1)
            return
        if f.is_repeated:
            getattr(msg, f.name).extend(self.scalar(f) for _ in range(self.rng.randint(0, 3)))
        else:
            setattr(msg, f.name, self.scalar(f))

    def scalar(self, f: FieldDescriptor) -> Any:
        rng = self.rng
        cpp = f.cpp_type
        if cpp == _T.CPPTYPE_ENUM:
            enum = cast(EnumDescriptor, f.enum_type)
            numbers = [v.number for v in enum.values]
            if not enum.is_closed and rng.random() < 0.2:
                return max(numbers) + rng.randint(1, 9)  # a number the enum does not name
            return rng.choice(numbers)
        if cpp == _T.CPPTYPE_STRING:
            if f.type == _T.TYPE_BYTES:
                return rng.randbytes(rng.randint(0, 6))
            return rng.choice(["", "a", "snake_case", "é ü ✓", "x" * rng.randint(1, 9)])
        if cpp == _T.CPPTYPE_BOOL:
            return rng.random() < 0.5
        if cpp in (_T.CPPTYPE_INT32, _T.CPPTYPE_INT64):
            bits = 31 if cpp == _T.CPPTYPE_INT32 else 63
            return rng.choice([0, 1, -1, rng.randint(-(2**bits), 2**bits - 1)])
        if cpp in (_T.CPPTYPE_UINT32, _T.CPPTYPE_UINT64):
            bits = 32 if cpp == _T.CPPTYPE_UINT32 else 64
            return rng.choice([0, 1, rng.randint(0, 2**bits - 1)])
        value = rng.choice([0.0, 1.5, -2.0, 1e300, math.inf, -math.inf, math.nan, rng.random()])
        if cpp == _T.CPPTYPE_FLOAT:
            value = rng.choice([0.0, 0.1, -3.25, math.inf, math.nan, rng.random()])
            return struct.unpack("f", struct.pack("f", value))[0]
        return value

    def json_value(self, depth: int) -> Any:
        kinds = ["null", "number", "string", "bool"] + (["object", "list"] if depth < 3 else [])
        kind = self.rng.choice(kinds)
        if kind == "number":
            return self.rng.choice([0, 3, -1.5, 2**60, self.rng.random()])
        if kind == "string":
            return self.rng.choice(["", "b", "ü"])
        if kind == "bool":
            return self.rng.random() < 0.5
        if kind == "object":
            return self.json_object(depth + 1)
        if kind == "list":
            return [self.json_value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        return None

    def json_object(self, depth: int) -> dict[str, Any]:
        keys = self.rng.sample(["z", "a", "m", "b_c", "Q", "é"], self.rng.randint(0, 4))
        return {k: self.json_value(depth + 1) for k in keys}


def converted(convert: Any, *args: Any) -> tuple[str, Any]:
    """("ok", the JSON text in its key order) or ("error", the exception's type)."""
    try:
        return "ok", json.dumps(convert(*args))
    except Exception as err:
        return "error", type(err)


def _ours(msg: Any, pool: DescriptorPool, proto_names: bool) -> Any:
    return message_dict(msg, pool, proto_field_names=proto_names)


def check_every_type(schema: Schema, seed: int) -> int:
    rng = random.Random(seed)
    filler = Filler(rng, schema.pool)
    checked = 0
    for desc in message_types(schema):
        cls = message_factory.GetMessageClass(desc)
        for proto_names in (False, True):
            for _ in range(SAMPLES):
                msg = filler.fill(cls())
                ours = converted(_ours, msg, schema.pool, proto_names)
                theirs = converted(_slow, msg, schema.pool, proto_names)
                assert ours == theirs, (desc.full_name, proto_names, msg)
                checked += 1
    return checked


@pytest.mark.parametrize("seed", [1, 2])
def test_llama_mesh_messages_convert_as_json_format_converts_them(seed: int) -> None:
    assert check_every_type(Schema.load(), seed) > 1000


def test_the_gateway_test_protos_convert_as_json_format_converts_them(api: CompiledApi) -> None:
    # Every scalar kind, maps with int and bool keys, bytes, floats, Any.
    assert check_every_type(Schema.load(api.descriptor_set), 3) > 100


def wkt(schema: Schema, name: str) -> Any:
    return message_factory.GetMessageClass(schema.pool.FindMessageTypeByName(name))


def test_a_struct_writes_its_keys_sorted_at_every_depth() -> None:
    schema = Schema.load()
    msg = wkt(schema, "google.protobuf.Struct")()
    msg.update({"b": 1, "a": {"d": [{"f": 1, "e": 2}], "c": None}})
    assert json.dumps(message_dict(msg, schema.pool)) == (
        '{"a": {"c": null, "d": [{"e": 2.0, "f": 1.0}]}, "b": 1.0}'
    )


def test_json_formats_errors_are_kept() -> None:
    schema = Schema.load()
    with pytest.raises(ValueError, match="Infinity"):
        message_dict(wkt(schema, "google.protobuf.Value")(number_value=math.inf), schema.pool)


def test_a_turns_events_take_the_planned_way(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = Schema.load()
    filler = Filler(random.Random(4), schema.pool)
    cls = wkt(schema, "llama_mesh.v1.StreamTurnResponse")
    messages = [filler.fill(cls()) for _ in range(50)]
    expected = [_slow(m, schema.pool, True) for m in messages]

    def refused(*args: Any) -> Any:
        raise AssertionError("json_format's way taken")

    monkeypatch.setattr("llama_mesh_gateway.message_dict._slow", refused)
    assert [message_dict(m, schema.pool, proto_field_names=True) for m in messages] == expected
