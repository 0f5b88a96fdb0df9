"""A child process's pipes, as the supervisor uses them: the ready line on stdout, the
rest of stdout read away, stderr passed on line by line, and a kill that closes them.

    ready = await read_ready_line(process.stdout)   # {"ready": true, ...} or None
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: How long a stopped child's stderr is read for its last lines.
STDERR_DRAIN_SECONDS = 5.0
#: The longest line read from a child (a log line with a long traceback).
LINE_LIMIT = 1 << 20


async def read_ready_line(
    stdout: asyncio.StreamReader, on_other_line: Callable[[bytes], None] | None = None
) -> dict[str, Any] | None:
    """The component's ready line (`{"ready": true, ...}` on stdout), or None if its
    output ends first. Other lines go to `on_other_line`."""
    while line := await stdout.readline():
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if isinstance(message, dict) and message.get("ready") is True:
                return message
        if on_other_line is not None:
            on_other_line(line)
    return None


async def kill(
    process: asyncio.subprocess.Process, stderr: asyncio.Task[None] | None = None
) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()
    if process.stdin is not None:
        process.stdin.close()
    await drained(stderr)


async def drained(reader: asyncio.Task[None] | None) -> None:
    """Let a stderr reader pass on a stopped child's last lines (how it stopped), but
    not wait forever on a pipe a grandchild still holds open."""
    if reader is None:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(STDERR_DRAIN_SECONDS):
            await asyncio.shield(reader)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await reader


async def pass_lines(
    stream: asyncio.StreamReader, name: str, on_line: Callable[[str, bytes], None]
) -> None:
    """Pass each line of a child's stderr on, to the end of the pipe."""
    while line := await stream.readline():
        try:
            on_line(name, line)
        except Exception:
            logger.exception("%s: a line of its stderr was lost", name)


async def discard(stream: asyncio.StreamReader, name: str) -> None:
    """Keep reading a child's stdout so it never blocks on a full pipe."""
    while line := await stream.readline():
        logger.debug("%s: %s", name, line.decode(errors="replace").rstrip())
