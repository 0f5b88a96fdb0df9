"""Helpers for the CLI tests: the real `llama-mesh` command in subprocesses.

`llama_mesh_up(file)` runs `llama-mesh up FILE -o json` and yields once its JSON ready
line arrives; `cli(...)` runs one command and returns (exit code, stdout, stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
import yaml
from typer.core import TyperGroup
from typer.main import get_command

from llama_mesh.cli.app import app

from processes import Result, run

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
CLI = Path(sys.executable).parent / "llama-mesh"


async def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0, cwd: Path = ROOT
) -> Result:
    """Run `llama-mesh ARGS` to the end (in `cwd`)."""
    return await run(str(CLI), *args, env=env, timeout=timeout, cwd=cwd)


def write_deployment(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def quickstart(tmp_path: Path, *, services: list[str] | None = None) -> dict[str, Any]:
    """The quickstart deployment, on free ports, with its state under tmp_path."""
    data: dict[str, Any] = yaml.safe_load((QUICKSTART / "deployment.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["control_plane"]["port"] = 0
    data["gateway"]["port"] = 0
    for service in data["services"].values():
        service["path"] = str(QUICKSTART)
    if services is not None:
        data["services"] = {n: s for n, s in data["services"].items() if n in services}
    return data


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parse_command(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Resolve `llama-mesh ARGS` to its command and parse its options (without running it)."""
    command: Any = get_command(app)
    path: list[str] = []
    rest = list(args)
    while isinstance(command, TyperGroup):
        name = rest.pop(0)
        found = command.get_command(typer.Context(command), name)
        assert found is not None, f"llama-mesh has no command {' '.join([*path, name])!r}"
        command, path = found, [*path, name]
    context = command.make_context(" ".join(path), rest)
    return " ".join(path), context.params


def free_port() -> int:
    """A port nothing listens on (for "unreachable" and cluster-route tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Up:
    """A running `llama-mesh up`."""

    process: asyncio.subprocess.Process
    summary: dict[str, Any]
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    @property
    def control_plane(self) -> str:
        return str(self.summary["control_plane"])

    @property
    def token(self) -> str:
        """The admin token `up` generated (0600 under the state directory)."""
        return Path(self.summary["admin_token_file"]).read_text(encoding="utf-8").strip()

    @property
    def env(self) -> dict[str, str]:
        """An environment whose CLI and clients use that token."""
        return {**os.environ, "LLAMA_MESH_TOKEN": self.token}

    @property
    def pids(self) -> list[int]:
        pids = [int(p) for p in self.summary["pids"].values()]
        return [*pids, self.process.pid]

    async def next_event(self, kind: str) -> dict[str, Any]:
        while True:
            event = await self.events.get()
            if event.get("event") == kind:
                return event

    async def stop(self, timeout: float = 60.0) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout):
            return await self.process.wait()


@contextlib.asynccontextmanager
async def llama_mesh_up(
    file: Path,
    *args: str,
    log: Path,
    ready_timeout: float = 90.0,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Up]:
    """`llama-mesh up FILE -o json ARGS` (with `env` added to the environment), ready;
    SIGTERM (then SIGKILL) on exit."""
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            str(CLI),
            "up",
            str(file),
            "-o",
            "json",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, **(env or {})},
        )
    assert process.stdout is not None
    stdout = process.stdout
    reader: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(ready_timeout):
            while True:
                line = await stdout.readline()
                if not line:
                    await process.wait()
                    raise AssertionError(
                        f"llama-mesh up exited ({process.returncode}) before ready:\n"
                        + (await asyncio.to_thread(log.read_text))[-3000:]
                    )
                summary = json.loads(line)
                if summary.get("ready"):
                    break
        up = Up(process, summary)

        async def read_events() -> None:
            while line := await stdout.readline():
                up.events.put_nowait(json.loads(line))

        reader = asyncio.create_task(read_events())
        yield up
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(60):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
