"""JSON values through google.protobuf.Struct: what a workflow returned comes back the
same, whatever process decodes it."""

from __future__ import annotations

from google.protobuf import struct_pb2

from llama_mesh.core.json_values import to_python, to_struct, to_value


def test_integral_numbers_come_back_as_integers() -> None:
    value = to_python(to_value({"ticks": 3, "ratio": 0.5, "big": 2**53, "nested": [1.0, 2.5]}))
    assert value == {"big": 2**53, "nested": [1, 2.5], "ratio": 0.5, "ticks": 3}
    assert type(value["ticks"]) is int and type(value["nested"][0]) is int
    assert type(to_python(to_value(2**60))) is float  # beyond a double's exact integers


def test_fields_come_back_sorted_by_key() -> None:
    # A Struct is a protobuf map: its iteration order is the map's, which differs from
    # process to process. Sorted keys print the same everywhere.
    keys = [f"k{i:02d}" for i in range(40, 0, -1)]
    struct = to_struct({k: i for i, k in enumerate(keys)})
    decoded = struct_pb2.Struct.FromString(struct.SerializeToString())
    assert list(to_python(decoded)) == sorted(keys)
    assert list(to_python(to_value({"b": {"z": 1, "a": 2}, "a": 0}))["b"]) == ["a", "z"]
