"""How a child of `up` (or any `serve` command) knows to stop: SIGINT or SIGTERM, its
stdin closing (the supervisor is gone: launch/supervisor.py), or its own reason.

    await until_signalled(watch_stdin=True, also=runtime.drained.wait())
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable
from typing import Any


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
    if watch_stdin:
        waiters.add(asyncio.create_task(_stdin_closed()))
    other = asyncio.ensure_future(also) if also is not None else None
    if other is not None:
        waiters.add(other)
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
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
