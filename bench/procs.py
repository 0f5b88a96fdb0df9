"""Child processes of the bench: start, wait for readiness, sample /proc, stop.

Every process the bench starts goes through `Procs.start` and is stopped by
`Procs.stop_all` (SIGTERM, then SIGKILL after a grace period), by its own pid only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_mesh.launch.child_pipes import read_ready_line

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB (from /proc/<pid>/status)."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def free_port() -> int:
    """A port the OS picks, for third-party servers that cannot report the one they bound.

    llama_deploy's configs need a port before its servers start (they register their
    URL with each other), so binding port 0 ourselves is not an option there.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Proc:
    """One child process and what the bench knows about it."""

    name: str
    process: asyncio.subprocess.Process
    started_ns: int
    log_path: Path
    ready: dict[str, Any] = field(default_factory=dict)
    ready_s: float | None = None
    _pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


class Procs:
    """The bench's children, stopped together (in reverse start order)."""

    def __init__(self, log_dir: Path, grace: float = 10.0) -> None:
        self.log_dir = log_dir
        self.grace = grace  # longer when children write a profile on exit
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []

    async def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        ready_line: bool = True,
        ready_timeout: float = 60.0,
    ) -> Proc:
        """Start argv; with ready_line, return once it prints a JSON `{"ready": true}` line.

        stderr goes to LOG_DIR/NAME.log, and so does stdout after the ready line.
        """
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115, ASYNC230 (closed by the pump; local disk)
        started = time.perf_counter_ns()
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # a Ctrl-C of the bench does not hit children twice
        )
        proc = Proc(name, process, started, log_path)
        self.procs.append(proc)
        assert process.stdout is not None
        if ready_line:
            try:
                async with asyncio.timeout(ready_timeout):
                    ready = await read_ready_line(process.stdout, log.write)
                if ready is None:
                    raise RuntimeError(f"{name} exited before it was ready; see {log_path}")
                proc.ready = ready
            except TimeoutError:
                raise RuntimeError(
                    f"{name} not ready after {ready_timeout}s; see {log_path}"
                ) from None
            proc.ready_s = (time.perf_counter_ns() - started) / 1e9
        proc._pump = asyncio.create_task(_pump(process.stdout, log), name=f"pump-{name}")
        return proc

    async def stop(self, proc: Proc, grace: float | None = None) -> None:
        """SIGTERM this one process, SIGKILL it after `grace` seconds."""
        grace = self.grace if grace is None else grace
        if proc.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await proc.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.kill()
                await proc.process.wait()
        if proc._pump is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await proc._pump
        if proc in self.procs:
            self.procs.remove(proc)

    async def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            await self.stop(proc)


async def _pump(stream: asyncio.StreamReader, log: Any) -> None:
    try:
        while chunk := await stream.read(65536):
            log.write(chunk)
    finally:
        log.close()


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    interval: float = 0.02,
    what: str = "condition",
) -> float:
    """Poll `check` every `interval` s until it is true; return the seconds it took.

    Used only for llama_deploy, whose servers give no readiness signal but HTTP
    endpoints: polling them at a short interval is the only way to see them ready.
    """
    started = time.perf_counter()
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(Exception):
                if await check():
                    return time.perf_counter() - started
            await asyncio.sleep(interval)
    raise AssertionError(f"unreachable: {what}")


async def idle(pids: dict[str, int], seconds: float) -> dict[str, Any]:
    """CPU use of each process over `seconds` of idleness, in % of one core, and RSS."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    await asyncio.sleep(seconds)  # the measurement window itself
    elapsed = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_percent": {
            name: round(100.0 * (cpu_seconds(pid) - before[name]) / elapsed, 3)
            for name, pid in pids.items()
        },
        "rss_mib": {k: round(memory_kib(p)["VmRSS"] / 1024, 1) for k, p in pids.items()},
    }
