"""How a child of `up` (or any `serve` command) knows to stop: SIGINT or SIGTERM, its
stdin closing (the supervisor is gone: launch/supervisor.py), or its own reason.

A process whose supervisor is gone (stdin closed, no signal first: `up` was killed)
exits ORPHAN_GRACE seconds later whatever its shutdown still waits for: nobody is left
to stop it, and it must not outlive its deployment.

    await until_signalled(watch_stdin=True, also=runtime.drained.wait())
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable
from typing import Any

logger = logging.getLogger(__name__)

# How long a process whose supervisor is gone may take to stop before it exits anyway.
ORPHAN_GRACE = 20.0
ORPHAN_EXIT_CODE = 70  # EX_SOFTWARE


async def until_signalled(*, watch_stdin: bool = False, also: Awaitable[Any] | None = None) -> None:
    """Return on SIGINT or SIGTERM, once stdin closes (with `watch_stdin`: the supervisor
    is gone), or once `also` finishes; an error `also` raised is raised here.

        await until_signalled(watch_stdin=True, also=runtime.drained.wait())
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiters: set[asyncio.Future[Any]] = {asyncio.create_task(stop.wait())}
    orphaned: asyncio.Future[Any] | None = None
    if watch_stdin:
        orphaned = asyncio.create_task(_stdin_closed())
        waiters.add(orphaned)
    other = asyncio.ensure_future(also) if also is not None else None
    if other is not None:
        waiters.add(other)
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if orphaned is not None and orphaned.done() and not orphaned.cancelled():
            _exit_after(ORPHAN_GRACE)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    if other is not None and not other.cancelled():
        other.result()


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while await reader.read(4096):
            pass
    finally:
        transport.close()


def _exit_after(grace: float) -> None:
    """Exit the process in `grace` seconds unless it has exited by then (a thread: the
    event loop may be what hangs)."""

    def exit_now() -> None:
        logger.error("the supervisor is gone and stopping took over %.0fs: exiting", grace)
        logging.shutdown()
        os._exit(ORPHAN_EXIT_CODE)

    timer = threading.Timer(grace, exit_now)
    timer.daemon = True
    timer.start()
