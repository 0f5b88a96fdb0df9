"""`llama-mesh logs`: what a task's step prints (and logs) is a line of that task, kept
by `up` and shown by service and task, as text or JSON, and followed as it comes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from .conftest import CLI, ROOT, cli, llama_mesh_up, write_deployment

TESTS = ROOT / "tests"


def printing_deployment(tmp_path: Path, **sections: Any) -> Path:
    return write_deployment(
        tmp_path / "deployment.yaml",
        {
            "name": "printing",
            "state_dir": str(tmp_path / "state"),
            "control_plane": {"port": 0},
            "gateway": {"enabled": False},
            "services": {
                "printer": {"source": "mesh_workflows:PrintingWorkflow", "path": str(TESTS)}
            },
            **sections,
        },
    )


async def run_task(file: Path, word: str) -> str:
    ran = await cli("run", "printer", "--arg", f"word={word}", "-o", "json", "-f", str(file))
    assert ran.code == 0, ran.stderr
    name: str = ran.json()["name"]
    return name


@asynccontextmanager
async def following(*args: str) -> AsyncIterator[asyncio.StreamReader]:
    """`llama-mesh logs ARGS --follow -o json`, running; its stdout."""
    process = await asyncio.create_subprocess_exec(
        str(CLI), "logs", *args, "--follow", "-o", "json",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])
        )},
    )  # fmt: skip
    assert process.stdout is not None
    try:
        yield process.stdout
    finally:
        process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(15):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


async def line_saying(stdout: asyncio.StreamReader, message: str) -> list[dict[str, Any]]:
    """The lines up to and including the one whose message is `message`."""
    seen = []
    async with asyncio.timeout(60):
        while raw := await stdout.readline():
            seen.append(json.loads(raw))
            if seen[-1].get("message") == message:
                return seen
    raise AssertionError(f"the stream ended before {message!r}: {seen}")


@pytest.mark.timeout(240)
@pytest.mark.skipif(sys.platform == "win32", reason="unix socket")
async def test_logs_show_what_a_step_printed_tagged_with_its_task(tmp_path: Path) -> None:
    file = printing_deployment(tmp_path)
    async with llama_mesh_up(file, log=tmp_path / "up.log"):
        other = await run_task(file, "beta")
        task = await run_task(file, "alpha")
        task_id = task.rpartition("/")[2]

        # Followed until the step's print arrives: every line shown is of that task.
        async with following("printer", "--task", task, "-f", str(file)) as stdout:
            lines = await line_saying(stdout, "step says alpha")
        printed = lines[-1]
        assert printed["task"] == task
        assert printed["service"] == "printer"
        assert printed["session"] == task.split("/")[1]
        assert printed["logger"] == "llama_mesh.task.stdout"
        assert printed["component"] == "service"
        assert printed["child"] == "printer/1"
        assert printed["replica"]
        assert {line["task"] for line in lines} == {task}

        # Kept: shown again without --follow, the helper's print, the step's logger and
        # its stderr too, in order (not its debug line: the file's level is info), and
        # nothing of the other task.
        shown = await cli("logs", "--task", task_id, "-o", "json", "-f", str(file))
        assert shown.code == 0, shown.stderr
        messages = [line["message"] for line in shown.lines()]
        assert [m for m in messages if "alpha" in m] == [
            "step says alpha",
            "helper saw alpha",
            "logged alpha",
            "complained alpha",
        ]
        assert not any("beta" in m for m in messages)
        assert {line["task"] for line in shown.lines()} == {task}
        # The control plane's lines about the task carry it too.
        [created] = [line for line in shown.lines() if line["child"] == "control-plane"]
        assert created["message"] == f"task {task} created for service printer"
        assert created["session"] == task.split("/")[1]

        # As text, a line a person reads: the service, the short task id, the message;
        # the short id as it shows is enough for --task.
        text = await cli("logs", "printer", "--task", task_id[:12], "-f", str(file))
        assert text.code == 0, text.stderr
        assert "beta" not in text.stdout
        [said] = [line for line in text.stdout.splitlines() if line.endswith("step says alpha")]
        assert f" printer/1 [task {task_id[:12]}] llama_mesh.task.stdout: step says alpha" in said

        # A new task's print reaches a follower as it happens.
        async with following("printer", "-f", str(file)) as stdout:
            await line_saying(stdout, "step says beta")  # what was kept comes first
            third = asyncio.create_task(run_task(file, "gamma"))
            [*_, gamma] = await line_saying(stdout, "step says gamma")
            assert gamma["task"] == await third
        assert other != task

    # up's terminal shows the warnings (a step's stderr), not the info lines.
    terminal = (tmp_path / "up.log").read_text()
    assert f"printer/1 [task {task_id[:12]}] llama_mesh.task.stderr: complained alpha" in terminal
    assert "step says alpha" not in terminal


@pytest.mark.timeout(240)
@pytest.mark.skipif(sys.platform == "win32", reason="unix socket")
async def test_each_component_logs_at_its_level(tmp_path: Path) -> None:
    """The file's level for all, a component's own level over it, `up --log-level`
    over the file's; nats-server's own lines too, read by `up`."""
    logging = {"level": "error", "components": {"printer": "debug", "control_plane": "warning"}}
    file = printing_deployment(tmp_path, logging=logging)
    async with llama_mesh_up(file, "--log-level", "info", log=tmp_path / "up.log") as up:
        [replica] = up.summary["services"]["printer"]
        task = await run_task(file, "delta")
        shown = await cli("logs", "-o", "json", "-f", str(file))
        assert shown.code == 0, shown.stderr
    lines = shown.lines()
    # The printer at debug (its own level): the step's debug line is kept.
    printed = [line["message"] for line in lines if line.get("task") == task]
    assert "debugged delta" in printed
    # nats at info (up's --log-level over the file's error): its own lines, parsed.
    [nats_ready] = [line for line in lines if line["message"] == "Server is ready"]
    assert nats_ready["component"] == "nats"
    assert nats_ready["level"] == "info"
    assert nats_ready["logger"] == "nats-server"
    # The control plane at warning (its own level): none of its info lines.
    assert [line for line in lines if line["child"] == "control-plane"] == []
    # Every line kept says where it came from.
    assert all(line["child"] in {"nats", "control-plane", "printer/1"} for line in lines)
    # The replica's lines about a task, or about itself, say which replica it is.
    [serving] = [line for line in lines if " serving (Service API " in line["message"]]
    assert serving["replica"] == replica["replica_id"]
    assert {line["replica"] for line in lines if line.get("task") == task} == {
        replica["replica_id"]
    }


async def test_a_serve_command_logs_text_or_json_at_the_level_given(tmp_path: Path) -> None:
    """Outside `up`: readable text by default; LLAMA_MESH_LOG_LEVEL/_FORMAT (what a
    Kubernetes manifest sets) as --log-level/--log-format."""

    async def serve_nats(env: dict[str, str], *args: str) -> list[str]:
        process = await asyncio.create_subprocess_exec(
            str(CLI), "serve", "nats", "--data-dir", str(tmp_path / "nats"), *args,
            "--watch-stdin",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
        )  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        async with asyncio.timeout(60):
            ready = json.loads(await process.stdout.readline())
            assert ready["ready"] is True
            process.stdin.close()  # what `up` does to stop it
            _, stderr = await process.communicate()
        assert process.returncode == 0, stderr
        return stderr.decode().splitlines()

    text = await serve_nats({}, "--log-level", "info")
    [ready] = [line for line in text if "nats-server ready at" in line]
    assert " info    nats llama_mesh.launch.nats_server: nats-server ready at nats://" in ready

    lines = await serve_nats({"LLAMA_MESH_LOG_LEVEL": "info", "LLAMA_MESH_LOG_FORMAT": "json"})
    [ready_json] = [
        line for line in map(json.loads, lines) if line["message"].startswith("nats-server ready")
    ]
    assert ready_json["component"] == "nats"
    assert ready_json["level"] == "info"
    assert ready_json["logger"] == "llama_mesh.launch.nats_server"

    assert await serve_nats({}) == []  # warning by default: nothing to say


async def test_logs_of_a_deployment_that_is_not_running_say_so(tmp_path: Path) -> None:
    file = printing_deployment(tmp_path)
    shown = await cli("logs", "-f", str(file))
    assert shown.code == 4, (shown.code, shown.stderr)
    assert "deployment 'printing' is not running" in shown.stderr

    unknown = await cli("logs", "printr", "-f", str(file))
    assert unknown.code == 2, (unknown.code, unknown.stderr)
    assert "no service 'printr' in deployment 'printing': printer" in unknown.stderr


async def test_a_level_for_a_component_the_file_does_not_have_is_refused(
    tmp_path: Path,
) -> None:
    file = printing_deployment(tmp_path, logging={"components": {"printr": "debug"}})
    checked = await cli("check", str(file))
    assert checked.code == 2, (checked.code, checked.stderr)
    assert "no component 'printr': nats, control_plane, gateway or a service id" in (checked.stderr)


CHATTY = """
import threading

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent

print("imported chatty")
_asked = threading.Event()


def _background() -> None:
    _asked.wait()
    print("from a thread of its own")


threading.Thread(target=_background, daemon=True).start()


class Chatty(Workflow):
    @step
    async def go(self, ev: StartEvent) -> StopEvent:
        _asked.set()
        return StopEvent(result="ok")


chatty = Chatty()
"""


@pytest.mark.timeout(240)
@pytest.mark.skipif(sys.platform == "win32", reason="unix socket")
async def test_what_a_replica_prints_outside_a_task_is_a_line_of_its_replica(
    tmp_path: Path,
) -> None:
    (tmp_path / "chatty.py").write_text(CHATTY, encoding="utf-8")
    file = write_deployment(
        tmp_path / "deployment.yaml",
        {
            "name": "chatty",
            "state_dir": str(tmp_path / "state"),
            "control_plane": {"port": 0},
            "gateway": {"enabled": False},
            "services": {"chatty": {"source": "chatty:chatty"}},
        },
    )
    # `up -o json` keeps its stdout JSON although the module prints as up imports it.
    async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
        [replica] = up.summary["services"]["chatty"]
        async with following("chatty", "-f", str(file)) as stdout:
            imported = (await line_saying(stdout, "imported chatty"))[-1]
            ran = await cli("run", "chatty", "-o", "json", "-f", str(file), env=up.env)
            assert ran.code == 0, ran.stderr
            threaded = (await line_saying(stdout, "from a thread of its own"))[-1]
    for line in (imported, threaded):
        assert line["logger"] == "llama_mesh.stdout"
        assert line["service"] == "chatty"
        assert line["replica"] == replica["replica_id"]
        assert line["child"] == "chatty/1"
        assert "task" not in line
    # What up printed while it imported the module went to its stderr.
    assert "imported chatty" in (tmp_path / "up.log").read_text()


async def test_logs_are_shown_in_time_order_whatever_order_they_reached_up(
    tmp_path: Path,
) -> None:
    """`up` keeps lines as its children's pipes deliver them: a replica's line can come
    before the control plane's earlier one. Without --follow they are shown by time."""
    from llama_mesh.cli.logs import _read

    sent = [
        {"time": "2026-12-01T00:00:00.250Z", "message": "counted 1 of 2"},
        {"time": "2026-12-01T00:00:00.100Z", "message": "created"},
        {"time": "2026-12-01T00:00:00.250Z", "message": "counted 2 of 2"},
    ]
    asked: list[dict[str, Any]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.append(json.loads(await reader.readline()))
        writer.writelines((json.dumps(line) + "\n").encode() for line in sent)
        await writer.drain()
        writer.close()

    socket = tmp_path / "logs.sock"
    server = await asyncio.start_unix_server(serve, str(socket))
    async with server:
        shown: list[dict[str, Any]] = []
        await _read(socket, {"service": None, "task": None, "follow": False}, shown.append)
        assert [line["message"] for line in shown] == [
            "created",
            "counted 1 of 2",
            "counted 2 of 2",
        ]
        followed: list[dict[str, Any]] = []
        await _read(socket, {"service": None, "task": None, "follow": True}, followed.append)
        assert followed == sent  # as they come
    assert [request["follow"] for request in asked] == [False, True]
