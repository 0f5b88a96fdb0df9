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


def printing_deployment(tmp_path: Path) -> Path:
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

        # Kept: shown again without --follow, the helper's print and the step's logger
        # too, in order, and nothing of the other task.
        shown = await cli("logs", "--task", task_id, "-o", "json", "-f", str(file))
        assert shown.code == 0, shown.stderr
        messages = [line["message"] for line in shown.lines()]
        assert [m for m in messages if "alpha" in m] == [
            "step says alpha",
            "helper saw alpha",
            "logged alpha",
        ]
        assert not any("beta" in m for m in messages)
        assert {line["task"] for line in shown.lines()} == {task}

        # As text, a line a person reads: the service, the short task id, the message.
        text = await cli("logs", "printer", "--task", task_id, "-f", str(file))
        assert text.code == 0, text.stderr
        [said] = [line for line in text.stdout.splitlines() if line.endswith("step says alpha")]
        assert f" printer/1 [task {task_id[:12]}] llama_mesh.task.stdout: step says alpha" in said

        # A new task's print reaches a follower as it happens.
        async with following("printer", "-f", str(file)) as stdout:
            await line_saying(stdout, "step says beta")  # what was kept comes first
            third = asyncio.create_task(run_task(file, "gamma"))
            [*_, gamma] = await line_saying(stdout, "step says gamma")
            assert gamma["task"] == await third
        assert other != task


async def test_logs_of_a_deployment_that_is_not_running_say_so(tmp_path: Path) -> None:
    file = printing_deployment(tmp_path)
    shown = await cli("logs", "-f", str(file))
    assert shown.code == 4, (shown.code, shown.stderr)
    assert "deployment 'printing' is not running" in shown.stderr
