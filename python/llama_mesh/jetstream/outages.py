"""A store that does not answer for a while, as opposed to one that refuses.

When a NATS node dies, each stream it led has no leader until the others elect one (a
few seconds): a write to it gets no response (``NoStreamResponseError``, or a timeout),
and so does everything while the connection moves to another node. Nothing is wrong
with the request: the same call succeeds once the store answers again.

``through_outages`` runs such a call again until it does. A running attempt uses it
for its own reads and writes, so that an election costs it time, not one of its task's
attempts (handing the task back would count one, run the workflow again, and, repeated
every second of an election, use up the retry budget of a task nobody ran badly). A
store that refuses (full: ResourceExhaustedError; a compare-and-set that lost) is not
an outage: that error goes to the caller at once.

    await through_outages(lambda: turns.commit(...), f"committing task {name}")

The call must be safe to repeat (a compare-and-set write, a publish with its
Nats-Msg-Id, a read): a write whose answer was lost may have landed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import (
    ConnectionReconnectingError,
    NoRespondersError,
    OutboundBufferLimitError,
    StaleConnectionError,
)
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NoStreamResponseError

from llama_mesh.core.errors import UnavailableError
from llama_mesh.jetstream.api_errors import CLUSTER_FORMING

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Retries back off from FIRST_RETRY to MAX_RETRY seconds: an election takes seconds, a
# node's restart longer; nothing announces to a client that a stream has a leader again.
FIRST_RETRY = 0.05
MAX_RETRY = 1.0

_NO_ANSWER = (
    NoStreamResponseError,
    NoRespondersError,
    NatsTimeoutError,
    ConnectionReconnectingError,
    StaleConnectionError,
    OutboundBufferLimitError,
)
SERVICE_UNAVAILABLE = 503


class StoreOutageError(UnavailableError):
    """The store did not answer a control plane that wrote for this process (a
    replica's journal, jetstream/remote_journal.py), or has not yet stored a task's
    final event that another publish carries (jetstream/journal.py): an outage like
    any other."""


def is_outage(err: BaseException) -> bool:
    """Whether `err` says the store did not answer (no stream leader, no connection)
    rather than refused the request."""
    if isinstance(err, StoreOutageError):
        return True
    if isinstance(err, APIError):
        return err.code == SERVICE_UNAVAILABLE or err.err_code in CLUSTER_FORMING
    return isinstance(err, _NO_ANSWER)


async def through_outages(call: Callable[[], Awaitable[T]], doing: str) -> T:
    """`call()`'s result, calling it again while the store does not answer (see the
    module's doc); any other error is raised at once. Cancel it to give up (a
    deadline, a replica stopping)."""
    delay = FIRST_RETRY
    began: float | None = None
    while True:
        try:
            result = await call()
        except Exception as err:
            if not is_outage(err):
                raise
            if began is None:
                began = time.monotonic()
                logger.warning("%s: the store did not answer (%r); trying again", doing, err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY)
            continue
        if began is not None:
            logger.info("%s: the store answered after %.1fs", doing, time.monotonic() - began)
        return result
