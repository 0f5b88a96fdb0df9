"""A task's input is checked against its service's published input schema at creation
(task_creation.check_input): its required fields and, when the schema allows no
others, unknown fields; the JSON types are left to the service (pydantic's lax mode)."""

from __future__ import annotations

from typing import Any

import pytest

from llama_mesh.control_plane.task_creation import check_input
from llama_mesh.core.agent_turns import TurnInput
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.json_values import to_struct
from llama_mesh.v1 import resources_pb2

# The built-in agent service's schema: required fields, and no others allowed.
AGENTS = resources_pb2.Service(input_schema=to_struct(TurnInput.model_json_schema()))
TURN = {"agent_id": "a", "agent_config": {"model": "m"}, "messages": [{"role": "user"}]}


def _task(value: dict[str, Any]) -> resources_pb2.Task:
    return resources_pb2.Task(service="agents", input=to_struct(value))


def test_an_input_with_the_schemas_fields_passes() -> None:
    check_input(_task(TURN), AGENTS)
    # Types are not checked here: the service's own model converts or refuses them.
    check_input(_task({**TURN, "messages": "not a list"}), AGENTS)


def test_a_missing_required_field_is_named() -> None:
    with pytest.raises(
        InvalidArgumentError,
        match=r"task.input lacks required field\(s\) \['agent_config'\] of service 'agents' "
        r"\(it has \['agent_id', 'messages'\]\)",
    ):
        check_input(_task({"agent_id": "a", "messages": []}), AGENTS)


def test_an_unknown_field_is_named_when_the_schema_allows_no_others() -> None:
    with pytest.raises(
        InvalidArgumentError,
        match=r"task.input has unknown field\(s\) \['colour'\]; service 'agents' accepts "
        r"\['agent_config', 'agent_id', 'chat_history', ",
    ):
        check_input(_task({**TURN, "colour": "red"}), AGENTS)


def test_a_schema_that_allows_other_fields_takes_them() -> None:
    open_schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    extras: list[dict[str, Any]] = [
        {"additionalProperties": True},
        {},
        {"additionalProperties": {}},
    ]
    for extra in extras:
        service = resources_pb2.Service(input_schema=to_struct({**open_schema, **extra}))
        check_input(_task({"name": "ada", "colour": "red"}), service)
    # No schema at all (a service that published none): anything goes.
    check_input(_task({"colour": "red"}), resources_pb2.Service())
