"""Structured logs of every llama-mesh process, each line saying what it is about.

Readable text by default, one JSON object per line with ``format="json"`` (what `up`
asks of its children, to tag, store and show them: launch/log_capture.py). Every line
carries the process's component and, where known, the service, replica, session and
task it is about:

    configure_logging(LoggingConfig(level="info", format="json"), component="service")
    with log_scope(service="echo", replica="3f2a…", task="sessions/s1/tasks/9c…"):
        logger.info("…")   # {"time": …, "level": "info", …, "service": "echo", "task": …}

Inside a task's scope, a workflow's ``print()`` is a line of that task too, once
``capture_output()`` is on (a replica process turns it on; a notebook's LocalMesh
leaves the user's stdout alone). A replica prints outside any task too (a module's
top level as it is imported, a thread of its own): with ``outside_tasks`` those are
lines of the process (logger ``llama_mesh.stdout``), not lost on a stdout no one
reads. Loggers of the workflow's own code need nothing: the scope travels with the
asyncio tasks the workflow starts.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from llama_mesh.config.telemetry import LoggingConfig

#: What a line may be about, in the order text lines show them.
SCOPE_FIELDS = ("component", "service", "replica", "session", "task")
#: The loggers a task's printed output goes to (as lines of that task).
STDOUT_LOGGER = "llama_mesh.task.stdout"
STDERR_LOGGER = "llama_mesh.task.stderr"
#: The logger of what a process prints outside any task (capture_output(outside_tasks)).
PROCESS_STDOUT_LOGGER = "llama_mesh.stdout"


@dataclass
class LogScope:
    """What the lines logged in this context are about."""

    service: str = ""
    replica: str = ""
    session: str = ""
    task: str = ""
    # Printed text not yet ended by a newline, by stream ("stdout", "stderr").
    pending: dict[str, str] = field(default_factory=dict)


_scope: contextvars.ContextVar[LogScope | None] = contextvars.ContextVar(
    "llama_mesh_log_scope", default=None
)


# What every line of this process is about, once known (a replica's id: tag_process).
_process: dict[str, str] = {}


def tag_process(**fields: str) -> None:
    """Every line this process logs from now on carries `fields`, e.g. the replica id
    a replica got when it started: ``tag_process(replica="3f2a…")``."""
    _process.update({key: value for key, value in fields.items() if value})


def about_task(name: object, service: str = "") -> dict[str, str]:
    """The fields of a line about task `name` (``sessions/S/tasks/T``) logged outside
    its scope, e.g. by the control plane: ``logger.info(..., extra=about_task(name))``."""
    task = str(name)
    parts = task.split("/")
    fields = {"task": task}
    if len(parts) == 4 and parts[0] == "sessions":
        fields["session"] = parts[1]
    if service:
        fields["service"] = service
    return fields


def current_scope() -> LogScope | None:
    return _scope.get()


@contextlib.contextmanager
def log_scope(
    *, service: str = "", replica: str = "", session: str = "", task: str = ""
) -> Iterator[LogScope]:
    """Lines logged (and, with capture_output, printed) inside the block are about these
    fields, e.g. ``service="echo", task="sessions/s/tasks/t"``; on exit, printed text
    without a final newline is logged too."""
    scope = LogScope(service, replica, session, task)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)
        for stream, text in scope.pending.items():
            if text:
                _emit(scope, stream, text)
        scope.pending.clear()


class ScopeFilter(logging.Filter):
    """Puts the process's fixed fields and the current LogScope on every record."""

    def __init__(self, **fixed: str) -> None:
        super().__init__()
        self.fixed = {k: v for k, v in fixed.items() if v}

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (self.fixed | _process).items():
            if not getattr(record, key, ""):
                setattr(record, key, value)
        scope = _scope.get()
        if scope is not None:
            for key in ("service", "replica", "session", "task"):
                value = getattr(scope, key)
                if value and not getattr(record, key, ""):
                    setattr(record, key, value)
        return True


def _time(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, the scope's
    fields that are set, and the exception's traceback as text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in SCOPE_FIELDS:
            value = getattr(record, key, "")
            if value:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def short_task(task: str) -> str:
    """`9c41e2a07b11` for `sessions/s/tasks/9c41e2a07b11…`: enough to tell tasks apart."""
    return task.rpartition("/")[2][:12]


def text_line(line: dict[str, Any]) -> str:
    """A JSON log line as a person reads it:
    `12:00:01.123 info  echo/1 [task 9c41e2a07b11] llama_mesh.worker.attempt: message`."""
    stamp = str(line.get("time", ""))
    clock = stamp[11:23] if len(stamp) >= 23 else stamp
    # `echo/2` under up (the child), else the service or the component.
    where = line.get("child") or line.get("service") or line.get("component") or ""
    about = f" [task {short_task(line['task'])}]" if line.get("task") else ""
    text = (
        f"{clock} {line.get('level', '')!s:<7} {where}{about} "
        f"{line.get('logger', '')}: {line.get('message', '')}"
    )
    if line.get("exception"):
        text += "\n" + str(line["exception"])
    return text


class TextFormatter(logging.Formatter):
    """The readable form of JsonFormatter's lines (text_line)."""

    def __init__(self) -> None:
        super().__init__()
        self._json = JsonFormatter()

    def format(self, record: logging.LogRecord) -> str:
        return text_line(json.loads(self._json.format(record)))


_HANDLER_NAME = "llama-mesh"


def configure_logging(
    settings: LoggingConfig, *, component: str, service: str = "", stream: TextIO | None = None
) -> logging.Handler:
    """Send the process's logs to `stream` (stderr) at `settings.level`, in its format,
    every line carrying `component` (and `service`, for a replica). Calling it again
    replaces the handler it installed."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    handler.addFilter(ScopeFilter(component=component, service=service))
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    return handler


# ---------------------------------------------------------------- printed output


def _emit(scope: LogScope, stream: str, text: str) -> None:
    name = {"stdout": STDOUT_LOGGER, "process": PROCESS_STDOUT_LOGGER}.get(stream, STDERR_LOGGER)
    logger = logging.getLogger(name)
    level = logging.WARNING if stream == "stderr" else logging.INFO
    if not logger.isEnabledFor(level):
        return
    token = _scope.set(scope)
    try:
        logger.log(level, "%s", text)
    finally:
        _scope.reset(token)


class _TaskStream(io.TextIOBase):
    """Stands in for sys.stdout / sys.stderr: text written inside a task's scope
    becomes lines of that task's log; anything else goes where it always went, or,
    given `outside` (a scope of no task), becomes lines of the process."""

    def __init__(self, original: TextIO, name: str, outside: LogScope | None = None) -> None:
        self.original = original
        self.name = name
        self.outside = outside
        self._lock = threading.Lock()  # threads of the user's print outside a task

    def write(self, text: str) -> int:
        scope = _scope.get()
        if scope is not None:
            _buffer(scope, self.name, self.name, text)
        elif self.outside is not None:
            with self._lock:
                _buffer(self.outside, "process", self.name, text)
        else:
            return self.original.write(text)
        return len(text)

    def flush(self) -> None:
        self.original.flush()

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.original.encoding


def _buffer(scope: LogScope, stream: str, key: str, text: str) -> None:
    """Log each line `text` ends; keep what follows the last newline for later."""
    *lines, rest = (scope.pending.get(key, "") + text).split("\n")
    scope.pending[key] = rest
    for line in lines:
        _emit(scope, stream, line)


@contextlib.contextmanager
def capture_output(*, outside_tasks: bool = False) -> Iterator[None]:
    """While the block runs, what a task prints (``print()``, writes to sys.stderr) is
    logged as lines of that task (loggers ``llama_mesh.task.stdout`` at INFO and
    ``llama_mesh.task.stderr`` at WARNING). With `outside_tasks`, what is printed on
    stdout outside any task is logged too (``llama_mesh.stdout``, INFO), tagged with
    the process's fields (its service and replica); real_stdout() is the stdout that
    stays the process's own."""
    saved = sys.stdout, sys.stderr
    outside = LogScope() if outside_tasks else None
    sys.stdout = _TaskStream(saved[0], "stdout", outside)
    sys.stderr = _TaskStream(saved[1], "stderr")
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        if outside is not None and outside.pending.get("stdout"):
            _emit(outside, "process", outside.pending["stdout"])


def real_stdout() -> TextIO:
    """The process's stdout, also while capture_output() stands in for it (a `serve`
    command's ready line is for its supervisor, not a log line)."""
    out = sys.stdout
    return out.original if isinstance(out, _TaskStream) else out
