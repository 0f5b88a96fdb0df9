"""The logs of `up`'s children: collected, shown, kept, and served to `llama-mesh logs`.

`up` asks every child for JSON log lines on stderr (``--log-format json``). Each line
is tagged with the child it came from (``"child": "echo/2"``), shown on up's own
stderr in the deployment's format (readable text by default), written to
``.llama-mesh/logs/up.jsonl`` and passed to every ``llama-mesh logs --follow``
connected to up's log socket. The kept file is bounded: at ``max_bytes`` it becomes
``up.1.jsonl`` (the one before ``up.2.jsonl``, …, ``backups`` of them; the stdlib's
RotatingFileHandler), and a run starts with a file of its own the same way. No log
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
import io
import json
import logging
import logging.handlers
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
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


# gRPC's C core logs (absl) on stderr too: `I1201 13:37:01.201524   22021 file.cc:1403] text`.
_GRPC_LINE = re.compile(
    r"^([IWEF])(\d\d)(\d\d) (\d\d:\d\d:\d\d\.\d{3})\d*\s+\d+ ([^\]\s]+)\] (.*)$"
)
_GRPC_LEVELS = {"I": "info", "W": "warning"}


def grpc_core_line(text: str) -> dict[str, Any] | None:
    """A line gRPC's C core logged, at its own level (None if `text` is not one): its
    `I` lines (a peer that closed its connection: "Got goaway") showed on up's terminal
    as errors. The line carries no year; its clock is the machine's local time."""
    match = _GRPC_LINE.match(text)
    if match is None:
        return None
    tag, month, day, clock, source, message = match.groups()
    return {
        "time": f"{datetime.now().year}-{month}-{day}T{clock}",
        "level": _GRPC_LEVELS.get(tag, "error"),
        "logger": f"grpc ({source})",
        "message": message,
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


def rotated_log_file(path: Path, number: int) -> Path:
    """The `number`th file before `up.jsonl`: `up.1.jsonl` is the one before."""
    return path.with_suffix(f".{number}{path.suffix}")


def read_lines(files: list[TextIO]) -> Iterator[dict[str, Any]]:
    """The lines kept in these open files, in order; each is closed once read."""
    for kept in files:
        with kept:
            for raw in kept:
                with contextlib.suppress(ValueError):
                    line = json.loads(raw)
                    if isinstance(line, dict):
                        yield line


class _KeptLines(logging.handlers.RotatingFileHandler):
    """The file of kept lines (private: it may hold what tasks printed), renamed to
    `up.1.jsonl` at `max_bytes`, the older ones shifted (`backups` of them kept)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True
        )
        self.namer = _rotated_name
        self.setFormatter(logging.Formatter("%(message)s"))
        self.rotations = 0  # in this run

    def _open(self) -> io.TextIOWrapper:
        # Appends, as the stdlib's does at a size.
        return open(self.baseFilename, "a", encoding=self.encoding, opener=_private)

    def doRollover(self) -> None:
        super().doRollover()
        self.rotations += 1


def _rotated_name(default: str) -> str:
    """`up.1.jsonl` for the stdlib's `up.jsonl.1`: the kept files keep their suffix."""
    base, _, number = default.rpartition(".")
    return str(rotated_log_file(Path(base), int(number)))


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
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
    ) -> None:
        """`levels`: the least severe level kept of a child that cannot be told its
        own (nats-server logs info and up), e.g. ``{"nats": "warning"}``. The kept file
        starts again at `max_bytes`, `backups` older ones kept."""
        self.path = path
        self._floors = {child: _LEVELS.index(level) for child, level in (levels or {}).items()}
        self.show = show
        self._show_level = _LEVELS.index(show_level)
        self._stream = stream or sys.stderr
        path.parent.mkdir(parents=True, exist_ok=True)
        # Closed by close() (serving() calls it).
        self._kept = _KeptLines(path, max_bytes, backups)
        # Each run starts a file of its own; the run before's move along (up.1.jsonl…).
        if path.exists() and path.stat().st_size:
            self._kept.doRollover()
            self._kept.rotations = 0
        self._sequence = 0
        self._followers: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def close(self) -> None:
        for follower in self._followers:
            with contextlib.suppress(asyncio.QueueFull):
                follower.put_nowait(None)
        self._kept.close()

    def kept_files(self) -> list[Path]:
        """This run's kept files, oldest first (those rotated out beyond `backups` are
        gone)."""
        rotated = min(self._kept.rotations, self._kept.backupCount)
        return [rotated_log_file(self.path, n) for n in range(rotated, 0, -1)] + [self.path]

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
            # Not a JSON log line: nats-server's own, gRPC's, or a crash's traceback.
            line = (
                nats_server_line(text)
                or grpc_core_line(text)
                or {"level": "error", "message": text}
            )
        if _rank(line) < self._floors.get(child, 0):
            return
        line.setdefault("component", child)
        line["child"] = child
        self._sequence += 1
        line["seq"] = self._sequence
        self._kept.handle(logging.makeLogRecord({"msg": json.dumps(line, ensure_ascii=False)}))
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
            # Opened here, between two lines kept: a rotation while they are read
            # renames files, not what was opened.
            opened = _open_kept(self.kept_files())
            for line in await asyncio.to_thread(lambda: list(read_lines(opened))):
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


def _open_kept(paths: list[Path]) -> list[TextIO]:
    opened: list[TextIO] = []
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            opened.append(path.open(encoding="utf-8"))
    return opened


def _fresh(socket_path: Path) -> None:
    """A private directory for the socket, without the socket of an `up` that died."""
    socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
