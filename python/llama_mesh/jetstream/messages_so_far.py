"""What a stream holds now on a subject, read once: the one way the mesh reads "so far".

Not nats-py's KeyValue.watch (nor KeyValue.keys, nor consumer info alone): nats-py
decides that there is nothing to read from consumer info and a client-side delivered
count, which is still 0 while messages the server already pushed wait behind the
subscription, so a read could come back empty (nats-io/nats.py#842). Here the end is
the server's own count: nothing delivered and nothing pending means nothing to read;
otherwise read until a message says nothing more is pending.

    async with messages_so_far(js, subject, stream=..., deliver_policy=...) as messages:
        async for msg in messages:      # ends with the last message there was
            ...

KV listings (kv_listing.py) and a task's events so far (event_history.py) read this way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js import api as js_api


@contextlib.asynccontextmanager
async def messages_so_far(
    js: JetStreamContext,
    subject: str,
    *,
    stream: str,
    deliver_policy: js_api.DeliverPolicy,
    headers_only: bool | None = None,
    config: js_api.ConsumerConfig | None = None,
    timeout: float = 30.0,
) -> AsyncIterator[AsyncIterator[Msg]]:
    """The messages of `stream` on `subject` (a subject pattern) from `deliver_policy`
    on, up to the last one published when it opened (bodies empty with
    `headers_only`); the reading is bounded by `timeout` (TimeoutError). The caller
    may stop early; leaving the block unsubscribes."""
    sub = await js.subscribe(
        subject,
        stream=stream,
        ordered_consumer=True,
        deliver_policy=deliver_policy,
        headers_only=headers_only,
        config=config,
    )
    try:
        info = await sub.consumer_info()
        empty = info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq)
        async with asyncio.timeout(timeout):
            yield _nothing() if empty else _until_none_pending(sub)
    finally:
        await sub.unsubscribe()


async def _until_none_pending(sub: Subscription) -> AsyncIterator[Msg]:
    async for msg in sub.messages:
        yield msg
        if msg.metadata.num_pending == 0:
            return


async def _nothing() -> AsyncIterator[Msg]:
    return
    yield
