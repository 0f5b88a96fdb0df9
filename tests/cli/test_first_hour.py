"""The first hour with the CLI (issue 16, item 5), each through the real command:
`--version`; a refused connection fails at once and says which address it tried; the
deployment file of the current directory is found; `sessions create --allow-existing`;
error types named as the Python exceptions are; Ctrl-C during `run` says how to follow
or cancel the task (or cancels it, with --cancel-on-interrupt)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import llama_mesh
from llama_mesh.cli.target import DEFAULT_CONTROL_PLANE, Output, Target

from .conftest import CLI, cli, llama_mesh_up, quickstart, write_deployment


async def test_version() -> None:
    result = await cli("--version")
    assert (result.code, result.stdout) == (0, f"llama-mesh {llama_mesh.__version__}\n")


@contextlib.asynccontextmanager
async def refusing_listener() -> AsyncIterator[tuple[str, list[int]]]:
    """An address that resets every connection at once; yields (address, [count])."""
    count = [0]

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count[0] += 1
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", count


async def test_a_refused_connection_fails_at_once_and_names_the_address() -> None:
    async with refusing_listener() as (address, attempts):
        result = await cli("status", "-c", address, "-o", "json")
        assert result.code == 4
        error = result.json()["error"]
        assert error["type"] == "UnavailableError"
        assert error["message"].startswith(f"cannot reach the control plane at {address}: ")
        assert error["message"].count("control plane at") == 1, error["message"]
        assert attempts == [1]  # no retries: the command failed on the first refusal

        # --connect-timeout waits for a control plane that is starting: it tries again.
        attempts[0] = 0
        waited = await cli("status", "-c", address, "--connect-timeout", "2", "-o", "json")
        assert waited.code == 4
        assert attempts[0] > 1
        assert waited.json()["error"]["message"].count("control plane at") == 1


async def test_a_deployment_file_here_that_is_not_running(tmp_path: Path) -> None:
    data = quickstart(tmp_path, services=["echo"])
    data["control_plane"]["port"] = 0
    write_deployment(tmp_path / "llama-mesh.yaml", data)
    result = await cli("status", "-o", "json", cwd=tmp_path)
    assert result.code == 4
    assert "llama-mesh up llama-mesh.yaml" in result.json()["error"]["message"]

    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = await cli("check", cwd=empty)
    assert nothing.code == 2
    assert f"no deployment file given, and no llama-mesh.yaml or deployment.yaml in {empty}" in (
        nothing.stderr.replace("\n", "")
    )


def test_a_deployment_yaml_of_something_else_is_not_taken_for_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "deployment.yaml").write_text("apiVersion: apps/v1\nkind: Deployment\n")
    target = Target(None, None, Output.text, 0.0)
    assert (target.address, target.source) == (DEFAULT_CONTROL_PLANE, " (the default address)")


@pytest.fixture
async def up_here(tmp_path: Path) -> AsyncIterator[Path]:
    """The quickstart's echo and approval, running as ./deployment.yaml of a directory."""
    here = tmp_path / "project"
    here.mkdir()
    data = quickstart(tmp_path, services=["echo", "approval"])
    async with llama_mesh_up(
        write_deployment(here / "deployment.yaml", data), log=tmp_path / "up.log"
    ):
        yield here


@pytest.mark.timeout(300)
async def test_the_deployment_here_its_sessions_and_ctrl_c(up_here: Path) -> None:
    here = up_here
    checked = await cli("check", cwd=here)
    assert checked.code == 0, checked.stderr
    assert checked.stdout.startswith("deployment.yaml: deployment 'quickstart' is valid")

    # No address, no token given: the running deployment of ./deployment.yaml is used,
    # with the admin token its `up` wrote.
    ran = await cli("run", "echo", "--arg", "arg1=hi", "-q", cwd=here)
    assert (ran.code, ran.stdout, ran.stderr) == (0, '"hi_result"\n', "")

    created = await cli("sessions", "create", "demo", cwd=here)
    assert (created.code, created.stdout) == (0, "sessions/demo\n")
    again = await cli("sessions", "create", "demo", "-o", "json", cwd=here)
    assert again.code == 5 and again.json()["error"]["type"] == "AlreadyExistsError"
    # It said "set allow_existing to get it", the API's field, to a CLI user.
    assert again.json()["error"]["message"] == (
        "session 'sessions/demo' exists already; --allow-existing shows it"
    )
    allowed = await cli("sessions", "create", "demo", "--allow-existing", cwd=here)
    assert (allowed.code, allowed.stdout) == (0, "sessions/demo\n")

    missing = await cli("run", "nope", "-o", "json", cwd=here)
    assert missing.code == 3 and missing.json()["error"]["type"] == "NotFoundError"
    bad = await cli("run", "echo", "--input", "[", "-o", "json", cwd=here)
    assert bad.code == 2 and bad.json()["error"]["type"] == "InvalidArgumentError"

    name = await interrupted_run(here)
    state = await cli("tasks", "get", name, "-o", "json", cwd=here)
    assert state.json()["state"] == "WAITING_FOR_INPUT"  # Ctrl-C left it running

    cancelled = await interrupted_run(here, "--cancel-on-interrupt")
    events = await cli("tasks", "events", cancelled, "--follow", "-o", "json", cwd=here)
    assert events.lines()[-1]["state"] == "CANCELLED"


async def interrupted_run(here: Path, *args: str) -> str:
    """`llama-mesh run approval` until it waits for input, then Ctrl-C: the task's name."""
    process = await asyncio.create_subprocess_exec(
        str(CLI),
        "run",
        "approval",
        "--arg",
        "question=Ship it?",
        *args,
        cwd=here,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        shown = b""
        async with asyncio.timeout(60):
            while b"waits for input" not in shown:
                line = await process.stderr.readline()
                assert line, f"run ended before waiting: {shown.decode()}"
                shown += line
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest = await process.stderr.read()
            code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    said = (shown + rest).decode()
    name = said.split(" waits for input")[0].rsplit("\n", 1)[-1].strip()
    assert name.startswith("sessions/"), said
    assert code == 130
    if "--cancel-on-interrupt" in args:
        assert f"{name}: cancel requested" in rest.decode()
    else:
        assert f"llama-mesh tasks events {name} --follow" in rest.decode()
        assert f"llama-mesh tasks cancel {name}" in rest.decode()
    return name
