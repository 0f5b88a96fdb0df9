"""One bash per page, so that what a reader types carries over from block to block
(`T=$(...)`, `alias g=...`, `cd`), and background commands (servers) beside it.

    async with Shell(cwd, env) as sh:
        out, code = await sh.run("echo hi", timeout=10)    # ("hi\\n", 0)

stdout and stderr go to one pipe, in the order they were written, as on a terminal.
Each command reads /dev/null as stdin. The shell runs in a session of its own, and is
killed with its process group when the page ends, so nothing it started outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
from pathlib import Path
from types import TracebackType


class ShellError(RuntimeError):
    """The shell died or a command outlived its timeout."""


class Shell:
    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self._marker = "\x1fdoc-test-" + secrets.token_hex(4)
        self._done = re.compile(re.escape(self._marker) + r" (\d+)\n")
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Shell:
        self._process = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        # Aliases as in an interactive shell; every assignment exported, so that
        # commands run in the background see the variables the page set.
        await self.run("shopt -s expand_aliases; set -a", timeout=10)
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None and process.stdin is not None:
            process.stdin.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await process.wait()
        # Whatever the page left running in the background (`cmd &`) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            await process.wait()

    async def run(self, command: str, *, timeout: float) -> tuple[str, int]:
        """Run one command line (or a `\\`-continued one); its output and exit code."""
        process = self._process
        assert process is not None and process.stdin is not None and process.stdout is not None
        if process.returncode is not None:
            raise ShellError(f"the page's shell has exited ({process.returncode})")
        # A newline before the marker ends the command's last line; one is taken off
        # again. `( exit N )` gives the next command the `$?` this one left.
        script = (
            f"{{ {command}\n}} </dev/null 2>&1\n__doc_test_status=$?\n"
            f"printf '\\n{self._marker} %d\\n' $__doc_test_status\n"
            "( exit $__doc_test_status )\n"
        )
        process.stdin.write(script.encode())
        await process.stdin.drain()
        buffer = b""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    chunk = await process.stdout.read(65536)
                    if not chunk:
                        raise ShellError(
                            f"the shell exited while running {command!r}; it printed:\n"
                            + buffer.decode(errors="replace")
                        )
                    buffer += chunk
                    text = buffer.decode(errors="replace")
                    found = self._done.search(text)
                    if found:
                        return text[: found.start()].removesuffix("\n"), int(found.group(1))
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise ShellError(
                f"{command!r} did not finish within {timeout:g} s; it printed:\n"
                + buffer.decode(errors="replace")
            ) from None


class Background:
    """A command that keeps running (a server), its output collected as it comes.

    Stopped with SIGINT, as Ctrl-C in its terminal would (it runs in a session of its
    own, so the signal reaches it and nothing else).
    """

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.command = command
        self.cwd = cwd
        self.env = env
        self.output = ""
        self.process: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self.exited = False

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            "-c",
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while chunk := await self.process.stdout.read(65536):
            async with self._changed:
                self.output += chunk.decode(errors="replace")
                self._changed.notify_all()
        await self.process.wait()
        async with self._changed:
            self.exited = True
            self._changed.notify_all()

    async def until(self, ready: object, timeout: float) -> bool:
        """Wait until `ready(output)` is true; False if the command exited first."""
        assert callable(ready)
        async with asyncio.timeout(timeout), self._changed:
            while not ready(self.output):
                if self.exited:
                    return False
                await self._changed.wait()
        return True

    async def stop(self, timeout: float = 60.0) -> int:
        """Ctrl-C, then wait for it to exit (SIGKILL if it does not); its exit code."""
        process = self.process
        assert process is not None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
        try:
            async with asyncio.timeout(timeout):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise ShellError(
                f"{self.command!r} did not stop within {timeout:g} s of Ctrl-C"
            ) from None
        finally:
            if self._reader is not None:
                await self._reader
        assert process.returncode is not None  # waited for above
        return process.returncode


async def run_program(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[str, int]:
    """Run a program to its end: its output (stdout and stderr as one) and exit code.
    Killed, with what it started, if it outlives `timeout`."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await process.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        out, _ = await process.communicate()
        raise ShellError(
            f"{' '.join(argv)} did not finish within {timeout:g} s; it printed:\n"
            + out.decode(errors="replace")
        ) from None
    assert process.returncode is not None
    return out.decode(errors="replace"), process.returncode
