"""`llama-mesh run | status | sessions | tasks | send-event` against a real mesh:
JSON output for scripts and the exit codes of docs/cli.md."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import typer

from llama_mesh.cli.app import app
from llama_mesh.client import AsyncClient
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats

from .conftest import cli, free_port
from mesh_workflows import ApprovalWorkflow, EchoWorkflow, FailingWorkflow, StreamingWorkflow


@pytest.fixture
async def mesh(nats: EmbeddedNats) -> AsyncIterator[LocalMesh]:
    services = {
        "echo": EchoWorkflow(),
        "fail": FailingWorkflow(),
        "stream": StreamingWorkflow(),
        # No workflow timeout: under load the commands between its question and the
        # answer can take longer than the default 45 s.
        "approval": ApprovalWorkflow(timeout=None),
    }
    async with LocalMesh(services, nats_url=nats.url) as running:
        yield running


async def test_run_success_failure_and_unknown_service(mesh: LocalMesh) -> None:
    env = {"LLAMA_MESH_CONTROL_PLANE": mesh.address}

    ok = await cli("run", "echo", "--input", '{"arg1": "hello"}', "-o", "json", env=env)
    assert ok.code == 0, ok.stderr
    task = ok.json()
    assert task["state"] == "SUCCEEDED"
    assert task["result"] == "hello_result"
    assert task["service"] == "echo" and task["input"] == {"arg1": "hello"}

    text = await cli("run", "echo", "--arg", "arg1=hi", env=env)
    assert (text.code, json.loads(text.stdout)) == (0, "hi_result")
    assert "StopEvent" in text.stderr  # the events, shown live on stderr

    failed = await cli("run", "fail", "--arg", "message=it broke", "-o", "json", env=env)
    assert failed.code == 1
    error = failed.json()["error"]
    assert error["type"] == "Boom"
    assert "it broke" in error["message"]
    assert error["state"] == "FAILED"
    assert "failed: Boom: it broke" in failed.stderr
    assert "Boom: Boom" not in failed.stderr  # the type is said once
    assert "Boom(str(ev.get" in failed.json()["error"]["traceback"]

    unknown = await cli("run", "nope", "-o", "json", env=env)
    assert unknown.code == 3
    assert unknown.json()["error"]["type"] == "NotFoundError"
    assert "'nope' is not registered" in unknown.json()["error"]["message"]

    bad_input = await cli("run", "echo", "--input", "[1", env=env)
    assert bad_input.code == 2
    assert "--input is not JSON" in bad_input.stderr


async def test_run_with_an_unreachable_control_plane() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = await cli("run", "echo", "-c", address, "--connect-timeout", "1", "-o", "json")
    assert result.code == 4
    error = result.json()["error"]
    assert error["type"] == "UnavailableError"
    assert f"cannot reach the control plane at {address}" in error["message"]
    assert "Traceback" not in result.stderr


async def test_run_without_waiting_and_the_task_commands(mesh: LocalMesh) -> None:
    env = {"LLAMA_MESH_CONTROL_PLANE": mesh.address}
    started = await cli("run", "stream", "--arg", "n=3", "--session", "s1", "--no-wait", env=env)
    assert started.code == 0, started.stderr
    name = started.stdout.strip()
    assert name.startswith("sessions/s1/tasks/")

    events = await cli("tasks", "events", name, "--follow", "-o", "json", env=env)
    assert events.code == 0, events.stderr
    lines = [json.loads(line) for line in events.stdout.splitlines()]
    assert [e["type"] for e in lines] == ["Progress"] * 3 + ["StopEvent"]
    assert [e["payload"] for e in lines[:3]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert lines[-1]["state"] == "SUCCEEDED" and lines[-1]["payload"] == 3

    got = await cli("tasks", "get", name, "-o", "json", env=env)
    assert (got.code, got.json()["result"]) == (0, 3)

    listed = await cli("tasks", "list", "--session", "s1", "-o", "json", env=env)
    assert [t["name"] for t in listed.json()] == [name]

    session = await cli("sessions", "get", "s1", "-o", "json", env=env)
    assert session.json()["name"] == "sessions/s1"
    assert [t["name"] for t in session.json()["tasks"]] == [name]

    missing = await cli("tasks", "get", "sessions/s1/tasks/nope", "-o", "json", env=env)
    assert missing.code == 3

    bad_state = await cli("tasks", "list", "--state", "DONE", env=env)
    assert bad_state.code == 2 and "RUNNING" in bad_state.stderr


async def test_tables_fit_80_columns_and_wide_shows_whole_names(mesh: LocalMesh) -> None:
    env = {"LLAMA_MESH_CONTROL_PLANE": mesh.address, "COLUMNS": "80"}
    async with AsyncClient(mesh.address) as client:
        sessions = [await client.create_session() for _ in range(2)]  # 32-hex ids
        for s in sessions:
            await s.run("echo", arg1="x")
        names = [t.name for s in sessions for t in await s.list_tasks()]
    assert len(names) == 2
    text = await cli("tasks", "list", env=env)
    assert text.code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, text.stdout
    for name in names:  # each row shows its session and task by their first characters
        session, task = name.split("/")[1], name.split("/")[3]
        assert any(f"{session[:8]}…/{task[:8]}…" in line for line in lines), text.stdout
        assert name not in text.stdout
    wide = await cli("tasks", "list", "-o", "wide", env=env)
    assert wide.code == 0, wide.stderr
    assert all(name in wide.stdout for name in names), wide.stdout
    status = await cli("status", env=env)
    assert max(len(line) for line in status.stdout.splitlines()) <= 80, status.stdout


async def test_human_in_the_loop_status_and_sessions(mesh: LocalMesh) -> None:
    env = {"LLAMA_MESH_CONTROL_PLANE": mesh.address}
    started = await cli(
        "run", "approval", "--arg", "question=Ship it?", "--no-wait", "-o", "json", env=env
    )
    task = started.json()["task"]
    async with AsyncClient(mesh.address) as client:
        async for event in client.task(task).events():
            if event.state == "WAITING_FOR_INPUT":
                break

    waiting = await cli("tasks", "list", "--state", "WAITING_FOR_INPUT", "-o", "json", env=env)
    [view] = waiting.json()
    assert view["name"] == task
    assert view["input_request"]["payload"] == {"prefix": "Ship it?"}
    not_finished = await cli("tasks", "events", task, env=env)
    assert not_finished.code == 2
    assert "use --follow" in not_finished.stderr

    sent = await cli(
        "send-event", task, "HumanResponseEvent", "--arg", "response=yes", "-o", "json", env=env
    )
    assert sent.code == 0, sent.stderr
    follow = await cli("tasks", "events", task, "--follow", "-o", "json", env=env)
    assert follow.code == 0, follow.stderr
    last = json.loads(follow.stdout.splitlines()[-1])
    assert last["state"] == "SUCCEEDED"
    assert last["payload"] == {"answer": "yes"}

    status = await cli("status", "-o", "json", env=env)
    assert status.code == 0, status.stderr
    data = status.json()
    assert data["control_plane"]["health"] == "SERVING"
    services = {s["name"]: s for s in data["services"]}
    assert set(services) == {"echo", "fail", "stream", "approval"}
    assert services["echo"]["replicas"][0]["state"] == "SERVING"
    assert data["recent_tasks"][0]["name"] == task

    created = await cli("sessions", "create", "mine", "--label", "team=qa", "-o", "json", env=env)
    assert created.json()["labels"] == {"team": "qa"}
    listed = await cli("sessions", "list", "-o", "json", env=env)
    assert "sessions/mine" in [s["name"] for s in listed.json()]
    assert len(listed.json()) > 1
    first = await cli("sessions", "list", "--limit", "1", "-o", "json", env=env)
    assert [s["name"] for s in first.json()] == [listed.json()[0]["name"]]
    deleted = await cli("sessions", "delete", "mine", env=env)
    assert deleted.code == 0
    gone = await cli("sessions", "get", "mine", env=env)
    assert gone.code == 3


async def test_the_deployment_file_names_the_control_plane(tmp_path: Path, mesh: LocalMesh) -> None:
    host, port = mesh.address.rsplit(":", 1)
    file = tmp_path / "deployment.yaml"
    file.write_text(f"name: here\ncontrol_plane:\n  host: {host}\n  port: {port}\n")
    result = await cli("run", "echo", "--arg", "arg1=f", "-f", str(file))
    assert (result.code, json.loads(result.stdout)) == (0, "f_result")

    zero = tmp_path / "zero.yaml"
    zero.write_text("name: zero\ncontrol_plane:\n  port: 0\n")
    result = await cli("status", "-f", str(zero))
    assert result.code == 4
    assert "is not running: start it with `llama-mesh up" in result.stderr


@pytest.mark.parametrize("group", [(), ("serve",), ("sessions",), ("tasks",), ("keys",)])
async def test_help_lists_each_command_with_its_whole_summary_on_one_line(
    group: tuple[str, ...],
) -> None:
    """The summary is the first paragraph of the command's docstring, unbroken (typer
    kept the docstring's line breaks: `reset`'s read "... The" and went on below)."""
    shown = await cli(*group, "--help", env={"COLUMNS": "400"})
    assert shown.code == 0, shown.stderr
    click_group = typer.main.get_command(app)
    for name in group:
        click_group = click_group.commands[name]  # type: ignore[attr-defined]
    for name, command in click_group.commands.items():  # type: ignore[attr-defined]
        first = (inspect.getdoc(command.callback) or command.help or "").split("\n\n")[0]
        summary = " ".join(first.split())
        assert re.search(rf"│ {re.escape(name)} +{re.escape(summary)} +│", shown.stdout), name
