"""`llama-mesh logs [SERVICE] [--task T] [--follow]`: the log lines of a running `up`.

`up` keeps every line its children log (launch/log_capture.py) and serves them on a
socket beside its run file; this command asks it for the lines of a service or a task
and, with --follow, each new one as it comes.

    llama-mesh logs echo --task 9c41e2a07b11 -f deployment.yaml
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from llama_mesh.cli.target import (
    DEPLOYMENT_FILE_NAMES,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    FileOption,
    Output,
    OutputOption,
    error,
    find_deployment_file,
    load_or_exit,
)
from llama_mesh.telemetry.logs import text_line


class Level(enum.StrEnum):
    """A log level, as the command line takes it."""

    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class Format(enum.StrEnum):
    """How a process writes its log lines."""

    text = "text"
    json = "json"


def logs(
    service: Annotated[
        str | None, typer.Argument(help="Only this service's lines (its replicas').")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task", "-t", help="Only this task's lines: its name, its id or the id's start."
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep showing new lines until Ctrl-C.")
    ] = False,
    file: FileOption = None,
    output: OutputOption = Output.text,
) -> None:
    """The log lines of a running `llama-mesh up`, each with the component, service and
    task it is about (what a task's steps print included)."""
    file = file or find_deployment_file()
    if file is None:
        names = " or ".join(DEPLOYMENT_FILE_NAMES)
        error(f"which deployment? Give its file (-f FILE), or run where its {names} is")
        raise typer.Exit(EXIT_USAGE)
    from llama_mesh.launch.up import read_run_file

    deployment = load_or_exit(file)
    if service is not None and service not in (services := deployment.service_ids()):
        error(
            f"no service {service!r} in deployment {deployment.name!r}: "
            f"{', '.join(sorted(services)) or 'it has none'}"
        )
        raise typer.Exit(EXIT_USAGE)
    running = read_run_file(deployment)
    if running is None or "logs" not in running:
        error(
            f"deployment {deployment.name!r} is not running: start it with `llama-mesh up {file}`"
        )
        raise typer.Exit(EXIT_UNAVAILABLE)
    request = {"service": service, "task": task, "follow": follow}
    show = _printer(output)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(_read(Path(running["logs"]["socket"]), request, show))
        except OSError as e:
            error(f"cannot reach the logs of {deployment.name!r}: {e}")
            raise typer.Exit(EXIT_UNAVAILABLE) from None


def _printer(output: Output) -> Callable[[dict[str, Any]], None]:
    def show(line: dict[str, Any]) -> None:
        line.pop("seq", None)
        text = json.dumps(line, ensure_ascii=False) if output is Output.json else text_line(line)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    return show


async def _read(
    socket: Path, request: dict[str, Any], show: Callable[[dict[str, Any]], None]
) -> None:
    """Show the lines `up` sends for `request`: in time order when they are all there
    (`up` keeps them as they reach it, and two processes' pipes race), as they come
    with --follow."""
    reader, writer = await asyncio.open_unix_connection(str(socket), limit=1 << 20)
    kept: list[dict[str, Any]] = []
    keep = show if request.get("follow") else kept.append
    try:
        writer.write((json.dumps(request) + "\n").encode())
        await writer.drain()
        while raw := await reader.readline():
            with contextlib.suppress(ValueError):
                keep(json.loads(raw))
        # UTC times with milliseconds (telemetry/logs.py): they sort as strings; the
        # sort is stable, so lines of one millisecond keep their order.
        for line in sorted(kept, key=lambda line: str(line.get("time", ""))):
            show(line)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
