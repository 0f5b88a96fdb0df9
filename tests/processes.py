"""Components in child processes, ready when they print their JSON ready line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_mesh.launch.child_pipes import read_ready_line

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CLI = Path(sys.executable).parent / "llama-mesh"


@contextlib.asynccontextmanager
async def component(
    *args: str, ready_timeout: float = 90.0
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, Any]]]:
    """Run `llama-mesh ARGS` and yield (process, ready line); stop it on exit."""
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    process = await asyncio.create_subprocess_exec(
        str(CLI), *args, stdout=asyncio.subprocess.PIPE, stderr=None, env=env
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(ready_timeout):
            ready = await read_ready_line(process.stdout)
        if ready is None:
            raise RuntimeError(f"llama-mesh {' '.join(args)} exited before ready")
        yield process, ready
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(15):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


@dataclass
class Result:
    """How a finished command went."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def check(self) -> Result:
        assert self.code == 0, (
            f"{' '.join(self.argv)} exited {self.code}\n"
            f"stdout: {self.stdout}\nstderr: {self.stderr}"
        )
        return self


async def run(
    *argv: str, timeout: float = 30.0, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> Result:
    """Run a command to its end (killed, by pid, if it outlives `timeout`)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Result(tuple(argv), process.returncode, out.decode(), err.decode())
