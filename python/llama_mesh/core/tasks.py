"""Stopping a task we own without swallowing a cancellation aimed at ourselves."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any]) -> BaseException | None:
    """Cancel `task`, wait until it has ended, and return the exception it ended with.

    The usual `task.cancel()` then `with suppress(CancelledError): await task` cannot
    tell the task's own CancelledError from one aimed at the caller: if the caller is
    cancelled while it waits, that is swallowed and the caller goes on as if nothing
    happened (a stop that never stops). Here the waiting is `asyncio.wait`, which never
    raises what the task ended with, so a CancelledError out of it is always the
    caller's own and propagates; the task, already cancelled, ends by itself and how it
    ended is logged by a done callback, since nobody is left to look.

    A task that ended by being cancelled returns None, as does one that returned. One
    that ended with another exception (before or while being cancelled) is logged with
    its traceback and returned, not raised: the caller is stopping and still has other
    things to close; a caller for whom that failure matters can raise it.
    """
    task.cancel()
    try:
        await asyncio.wait((task,))
    except asyncio.CancelledError:
        task.add_done_callback(_log_ending)
        raise
    return _log_ending(task)


def _log_ending(task: asyncio.Task[Any]) -> BaseException | None:
    if task.cancelled():
        return None
    error = task.exception()
    if error is not None:
        logger.error(
            "task %s ended with %r while being stopped", task.get_name(), error, exc_info=error
        )
    return error
