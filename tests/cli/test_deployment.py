"""Invalid deployment files: each gets its own error, naming the field and the line,
and `llama-mesh up` starts nothing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from llama_mesh.launch.deployment import (
    DeploymentError,
    check_ports_free,
    check_workflows,
    load_deployment,
    parse_deployment,
)

from .conftest import QUICKSTART, cli

VALID = f"""\
name: demo
services:
  echo:
    source: quickstart:echo
    path: {QUICKSTART}
"""


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(DeploymentError) as caught:
        parse_deployment(text, tmp_path / "deployment.yaml")
    return caught.value.problems


def test_the_quickstart_file_is_valid() -> None:
    d = load_deployment(QUICKSTART / "deployment.yaml")
    assert d.name == "quickstart"
    assert d.nats.embedded and d.nats_data_dir == QUICKSTART / ".llama-mesh" / "nats"
    assert d.services["echo"].replicas == 2
    assert d.service_path(d.services["echo"]) == QUICKSTART
    check_workflows(d, QUICKSTART / "deployment.yaml")


def test_unknown_field_names_it_its_line_and_the_valid_ones(tmp_path: Path) -> None:
    [problem] = problems(VALID + "    replica: 2\n", tmp_path)
    assert problem.startswith("services.echo.replica (line 6): unknown field 'replica'")
    assert "did you mean 'replicas'?" in problem
    assert "valid fields here: source, path," in problem


def test_bad_module_attribute(tmp_path: Path) -> None:
    [problem] = problems(VALID.replace("quickstart:echo", "quickstart.echo"), tmp_path)
    assert problem.startswith("services.echo.source (line 4): 'quickstart.echo' is not a")
    assert "expected 'module:attribute'" in problem


def test_port_clash(tmp_path: Path) -> None:
    text = VALID + "control_plane:\n  port: 7000\ngateway:\n  port: 7000\n"
    [problem] = problems(text, tmp_path)
    assert problem == (
        "gateway.port (line 9): port 7000 is also control_plane.port: "
        "every server needs its own port"
    )


def test_port_held_by_another_process(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        d = parse_deployment(
            VALID + f"control_plane:\n  port: {port}\ngateway:\n  enabled: false\n",
            tmp_path / "d.yaml",
        )
        [problem] = check_ports_free(d)
    assert problem.startswith(f"control_plane.port: 127.0.0.1:{port} is not free")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("quickstart:nope", "module 'quickstart' has no attribute 'nope'"),
        ("no_such_module:echo", "cannot import module 'no_such_module'"),
        ("quickstart:__doc__", "is a str, not a llama-index Workflow"),
    ],
)
def test_missing_workflow(tmp_path: Path, source: str, message: str) -> None:
    d = parse_deployment(VALID.replace("quickstart:echo", source), tmp_path / "d.yaml")
    with pytest.raises(DeploymentError) as caught:
        check_workflows(d, tmp_path / "d.yaml")
    [problem] = caught.value.problems
    assert problem.startswith("services.echo.source")
    assert message in problem


def test_every_problem_at_once_and_typed_values(tmp_path: Path) -> None:
    text = """\
name: Demo
nats:
  url: http://localhost:4222
  replicas: 7
services:
  echo:
    source: quickstart:echo
    max_concurrency: lots
    retry: {max_attempts: 0}
"""
    found = problems(text, tmp_path)
    assert [p.split(":")[0] for p in found] == [
        "name (line 1)",
        "nats.url (line 3)",
        "nats.replicas (line 4)",
        "services.echo.max_concurrency (line 8)",
        "services.echo.retry.max_attempts (line 9)",
    ]
    assert "expected nats://HOST:PORT" in found[1]
    assert "less than or equal to 5" in found[2]


def test_not_yaml_and_missing_name(tmp_path: Path) -> None:
    assert problems("name: [", tmp_path)[0].startswith("not valid YAML (line 1)")
    assert problems("services: {}\n", tmp_path) == ["the file: 'name' is required"]
    with pytest.raises(DeploymentError, match="cannot read the file"):
        load_deployment(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID + "    replica: 2\n", "services.echo.replica (line 6): unknown field"),
        (
            VALID.replace("quickstart:echo", "quickstart/echo"),
            "services.echo.source (line 4): 'quickstart/echo' is not a workflow reference",
        ),
        (
            VALID + "control_plane:\n  port: 7000\ngateway:\n  port: 7000\n",
            "gateway.port (line 9): port 7000 is also control_plane.port",
        ),
        (
            VALID.replace("quickstart:echo", "quickstart:missing"),
            "services.echo.source (line 4): module 'quickstart' has no attribute 'missing'",
        ),
    ],
    ids=["unknown-field", "bad-source", "port-clash", "missing-workflow"],
)
async def test_up_refuses_an_invalid_file_and_starts_nothing(
    tmp_path: Path, text: str, expected: str
) -> None:
    file = tmp_path / "deployment.yaml"
    file.write_text(text + f"state_dir: {tmp_path / 'state'}\n")
    result = await cli("up", str(file))
    assert result.code == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "state").exists()  # no NATS data dir, no run file
