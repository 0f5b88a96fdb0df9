"""The logs of `up`'s children: collected, shown, kept, and served to `llama-mesh logs`.

`up` asks every child for JSON log lines on stderr (``--log-format json``). Each line
is tagged with the child it came from (``"child": "echo/2"``), shown on up's own
stderr in the deployment's format (readable text by default), written to
``.llama-mesh/logs/up.jsonl`` (this run's; the run before's is ``up.1.jsonl``) and
passed to every ``llama-mesh logs --follow`` connected to up's log socket. No log
server to run: up already reads the children's output. nats-server, which cannot log
JSON, has its own lines read (nats_server_line).

    collector = LogCollector(path, show="text")
    async with collector.serving(socket_path):
        collector.add("echo/1", b'{"message": "hi", "task": "sessions/s/tasks/t"}')
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TextIO

from llama_mesh.telemetry.logs import text_line

logger = logging.getLogger(__name__)

#: How many lines a slow follower may fall behind before it is cut off.
FOLLOWER_BACKLOG = 10_000
_LEVELS = ["debug", "info", "warning", "error"]


def _rank(line: dict[str, Any]) -> int:
    level = str(line.get("level", "error")).lower()
    return _LEVELS.index(level) if level in _LEVELS else len(_LEVELS) - 1


#: A unix socket's path is at most 107 bytes on Linux.
_MAX_SOCKET_PATH = 100


def log_socket(state_path: Path) -> Path:
    """Where the `up` of a deployment whose state is in `state_path` serves its logs: in
    the state directory, or (a path too long for a socket) in a private directory of
    the system's temporary one."""
    path = state_path.resolve() / "logs.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"llama-mesh-{os.getuid()}" / f"{digest}.sock"


# nats-server's own lines: `[4242] 2026/11/30 18:00:00.123456 [INF] Server is ready`.
_NATS_LINE = re.compile(
    r"^\[\d+\] (\d{4})/(\d\d)/(\d\d) (\d\d:\d\d:\d\d\.\d{3})\d* \[(\w+)\] (.*)$"
)
_NATS_LEVELS = {"DBG": "debug", "TRC": "debug", "INF": "info", "WRN": "warning"}


def nats_server_line(text: str) -> dict[str, Any] | None:
    """A line nats-server logged, as a log line of the `nats` component (None if `text`
    is not one). Its clock is the machine's local time, as nats-server writes it."""
    match = _NATS_LINE.match(text)
    if match is None:
        return None
    year, month, day, clock, tag, message = match.groups()
    return {
        "time": f"{year}-{month}-{day}T{clock}",
        "level": _NATS_LEVELS.get(tag, "error"),
        "logger": "nats-server",
        "message": message,
        "component": "nats",
    }


def matches(line: dict[str, Any], service: str | None, task: str | None) -> bool:
    """Whether a log line is of `service` (its replicas' lines) and of `task` (a full
    task name, its id, or the start of its id as text lines show it)."""
    if service is not None and line.get("service") != service:
        return False
    if task is not None:
        about = str(line.get("task", ""))
        if not about or (about != task and not about.rpartition("/")[2].startswith(task)):
            return False
    return True


def previous_log_file(path: Path) -> Path:
    """Where the lines of the run before are kept: `up.1.jsonl` beside `up.jsonl`."""
    return path.with_suffix(f".1{path.suffix}")


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The lines a collector kept in `path` (none if it does not exist)."""
    try:
        with path.open(encoding="utf-8") as kept:
            for raw in kept:
                with contextlib.suppress(ValueError):
                    line = json.loads(raw)
                    if isinstance(line, dict):
                        yield line
    except FileNotFoundError:
        return


class LogCollector:
    """Tags, shows, keeps and passes on the log lines of up's children."""

    def __init__(
        self,
        path: Path,
        *,
        show: str = "text",
        show_level: str = "warning",
        levels: dict[str, str] | None = None,
        stream: TextIO | None = None,
    ) -> None:
        """`levels`: the least severe level kept of a child that cannot be told its
        own (nats-server logs info and up), e.g. ``{"nats": "warning"}``."""
        self.path = path
        self._floors = {child: _LEVELS.index(level) for child, level in (levels or {}).items()}
        self.show = show
        self._show_level = _LEVELS.index(show_level)
        self._stream = stream or sys.stderr
        path.parent.mkdir(parents=True, exist_ok=True)
        # Each run keeps its own lines; the run before's stay beside them (up.1.jsonl),
        # so the file does not grow run after run.
        with contextlib.suppress(FileNotFoundError):
            path.replace(previous_log_file(path))
        # Closed by close() (serving() calls it); private: it may hold what tasks printed.
        self._file = open(path, "w", encoding="utf-8", opener=_private)  # noqa: SIM115
        self._sequence = 0
        self._followers: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def close(self) -> None:
        for follower in self._followers:
            with contextlib.suppress(asyncio.QueueFull):
                follower.put_nowait(None)
        self._file.close()

    def add(self, child: str, raw: bytes) -> None:
        """One line a child wrote on stderr (a JSON log line, or any text)."""
        text = raw.decode("utf-8", "replace").rstrip("\n")
        if not text.strip():
            return
        line: dict[str, Any]
        try:
            parsed = json.loads(text)
            line = parsed if isinstance(parsed, dict) else {"message": text}
        except ValueError:
            # Not a JSON log line: nats-server's own, or a crash's traceback.
            line = nats_server_line(text) or {"level": "error", "message": text}
        if _rank(line) < self._floors.get(child, 0):
            return
        line.setdefault("component", child)
        line["child"] = child
        self._sequence += 1
        line["seq"] = self._sequence
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._file.flush()
        if _rank(line) >= self._show_level:
            shown = json.dumps(line) if self.show == "json" else text_line(line)
            self._stream.write(shown + "\n")
            self._stream.flush()
        for follower in list(self._followers):
            try:
                follower.put_nowait(line)
            except asyncio.QueueFull:
                # Too slow to keep up: it gets an end instead of unbounded memory.
                self._followers.discard(follower)

    # ---------------------------------------------------------------- followers

    @contextlib.asynccontextmanager
    async def serving(self, socket_path: Path) -> AsyncIterator[None]:
        """Serve `llama-mesh logs` on the unix socket `socket_path` while the block runs."""
        await asyncio.to_thread(_fresh, socket_path)
        server = await asyncio.start_unix_server(self._serve, path=str(socket_path))
        os.chmod(socket_path, 0o600)
        try:
            yield
        finally:
            server.close()
            self.close()
            await server.wait_closed()
            await asyncio.to_thread(socket_path.unlink, missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One `llama-mesh logs`: a JSON request line ({"service", "task", "follow"}),
        then the matching lines kept so far and, with follow, each new one."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(FOLLOWER_BACKLOG)
        try:
            request = json.loads(await reader.readline() or b"{}")
            service, task = request.get("service"), request.get("task")
            if request.get("follow"):
                # Listen before reading what was kept: nothing falls in between.
                self._followers.add(queue)
            last = 0
            for line in await asyncio.to_thread(lambda: list(read_lines(self.path))):
                last = max(last, int(line.get("seq", 0)))
                if matches(line, service, task):
                    writer.write((json.dumps(line) + "\n").encode())
            await writer.drain()
            while request.get("follow"):
                follower_line = await queue.get()
                if follower_line is None:
                    break
                if follower_line["seq"] > last and matches(follower_line, service, task):
                    writer.write((json.dumps(follower_line) + "\n").encode())
                    await writer.drain()
        except (ConnectionError, ValueError) as err:
            logger.debug("a logs follower left: %r", err)
        finally:
            self._followers.discard(queue)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def _fresh(socket_path: Path) -> None:
    """A private directory for the socket, without the socket of an `up` that died."""
    socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
