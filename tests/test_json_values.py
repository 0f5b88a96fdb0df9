"""JSON values through google.protobuf.Struct: what a workflow returned comes back the
same, whatever process decodes it."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2

from llama_mesh.core import json_values
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.json_values import check_finite, to_python, to_struct, to_value
from llama_mesh.v1 import agents_pb2 as ag
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2


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


def _json_format_way(message: struct_pb2.Struct | struct_pb2.Value) -> Any:
    """What to_python gave when it went through json_format (its reference)."""

    def restore(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
            return int(value)
        if isinstance(value, dict):
            return {k: restore(value[k]) for k in sorted(value)}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return value

    return restore(json_format.MessageToDict(message))


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["null", "bool", "int", "float", "str"] + (["dict", "list"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -7, 2**53, 2**53 + 2, rng.randint(-(10**6), 10**6)])
    if kind == "float":
        return rng.choice([0.5, -1e300, 1e-9, rng.random()])
    if kind == "str":
        return rng.choice(["", "é", "a b", "x" * 30])
    if kind == "dict":
        keys = rng.sample(["z", "a", "é", "B", "k_1", ""], rng.randint(0, 4))
        return {k: _random_json(rng, depth + 1) for k in keys}
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return None


def test_values_convert_as_json_format_converts_them() -> None:
    rng = random.Random(7)
    for _ in range(500):
        data = {"v": _random_json(rng), "w": _random_json(rng)}
        struct = to_struct(data)
        assert struct == json_format.ParseDict(data, struct_pb2.Struct())
        decoded = to_python(struct)
        assert json.dumps(decoded) == json.dumps(_json_format_way(struct))
        value = to_value(data["v"])
        assert json.dumps(to_python(value)) == json.dumps(_json_format_way(value))


def test_what_is_not_json_is_named_with_where_it_is() -> None:
    with pytest.raises(InvalidArgumentError, match=r"input is not JSON: .*b'x'.*\.a\.b"):
        to_struct({"a": {"b": b"x"}})
    with pytest.raises(InvalidArgumentError, match="must be a JSON object, not list"):
        to_struct([1])  # type: ignore[arg-type]


def test_a_number_json_cannot_write_is_refused() -> None:
    with pytest.raises(ValueError, match="inf"):
        to_python(struct_pb2.Value(number_value=math.inf))
    with pytest.raises(ValueError, match="nan"):
        to_python(to_struct({"a": [math.nan]}))


def test_a_message_holding_a_number_json_cannot_write_is_refused_naming_it() -> None:
    request = cp.CreateTaskRequest(task=resources_pb2.Task(input=to_struct({"a": [1, math.inf]})))
    with pytest.raises(InvalidArgumentError, match=r"^task\.input\.a\[1\] is Infinity") as inf:
        check_finite(request)
    assert inf.value.field == "task.input.a[1]"
    nan = struct_pb2.Value(number_value=math.nan)
    tool = ag.ToolDef(name="t", parameters=[ag.ToolParameter(name="p", default=nan)])
    with pytest.raises(InvalidArgumentError, match=r"tools\[0\]\.parameters\[0\]\.default is NaN"):
        check_finite(ag.CreateAgentRequest(agent_config=ag.AgentConfig(client_tools=[tool])))
    schemas = resources_pb2.Service()
    schemas.event_schemas["E"].update({"x": -math.inf})
    with pytest.raises(InvalidArgumentError, match=r"event_schemas\['E'\]\.x is -Infinity"):
        check_finite(cp.RegisterServiceRequest(service=schemas))
    finite = to_struct({"a": [1.5, -2, 1e308], "b": {"c": None}})
    check_finite(cp.CreateTaskRequest(task=resources_pb2.Task(input=finite)))
    check_finite(cp.GetTaskRequest(name="sessions/s/tasks/t"))  # nothing to walk


def test_a_large_finite_message_is_checked_without_walking_its_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = to_struct({"rows": [{"i": i, "x": i / 7} for i in range(5000)]})
    request = cp.CreateTaskRequest(task=resources_pb2.Task(input=rows))
    walked: list[object] = []
    real_walk = json_values._non_finite

    def walk(message: object, path: str) -> tuple[str, float] | None:
        walked.append(message)
        return real_walk(message, path)

    monkeypatch.setattr(json_values, "_non_finite", walk)
    check_finite(request)
    assert walked == []
    # One non-finite number among them is still found and named.
    row = request.task.input.fields["rows"].list_value.values[4321].struct_value
    for bits in ("000000000000f87f", "000000000000f8ff", "010000000000f07f", "000000000000f0ff"):
        row.fields["x"].number_value = struct.unpack("<d", bytes.fromhex(bits))[0]
        with pytest.raises(InvalidArgumentError, match=r"^task\.input\.rows\[4321\]\.x is "):
            check_finite(request)
