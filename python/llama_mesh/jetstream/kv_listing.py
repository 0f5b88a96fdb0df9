"""Reading the live keys of a KV bucket once, which nats-py's KeyValue cannot do safely.

Not `KeyValue.watch` (nor `KeyValue.keys`, built on it): nats-py decides that there
are no initial values from consumer info and a client-side delivered count, which is
still 0 while values the server already pushed wait behind the watch callback, so a
listing could come back empty (nats-io/nats.py#842; `keys` also matches filters as
substrings, not subjects). Here the end is the server's own count: nothing delivered
and nothing pending means empty; otherwise read until a message says nothing is
pending.

A KeyValue keeps its JetStream context, stream and subject prefix private, so this
reads the bucket through its layout as NATS ADR-8 defines it for every client
(stream `KV_{bucket}`, subjects `$KV.{bucket}.{key}`, deletes and purges marked by a
`KV-Operation` header). tests/test_store.py checks that layout against what nats-py's
KeyValue reports of the same bucket.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE

_DELETED = (KV_DEL, KV_PURGE)


def is_deletion(msg: Msg) -> bool:
    """Whether a bucket's message marks a key deleted: a delete or purge, or the
    marker the server leaves where a record expired (its `Nats-Marker-Reason`)."""
    headers = msg.headers or {}
    return headers.get(KV_OP) in _DELETED or KV_MARKER_REASON in headers


@dataclass(frozen=True)
class KvListing:
    """Lists the live keys (and values) of one bucket that match a subject pattern."""

    js: JetStreamContext
    bucket: str

    @property
    def stream(self) -> str:
        return f"KV_{self.bucket}"

    @property
    def prefix(self) -> str:
        return f"$KV.{self.bucket}."

    async def values(
        self, pattern: str, *, headers_only: bool = False, timeout: float = 30.0
    ) -> list[tuple[str, bytes]]:
        """The live keys matching the subject-style `pattern` and their values
        (empty values with `headers_only`), filtered by the server."""
        found = await self.entries(pattern, headers_only=headers_only, timeout=timeout)
        return [(key, value) for key, value, _ in found]

    async def entries(
        self, pattern: str, *, headers_only: bool = False, timeout: float = 30.0
    ) -> list[tuple[str, bytes, int]]:
        """`values`, each with its revision."""
        sub = await self.js.subscribe(
            f"{self.prefix}{pattern}",
            stream=self.stream,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            headers_only=headers_only,
        )
        found: list[tuple[str, bytes, int]] = []
        try:
            info = await sub.consumer_info()
            if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
                return found
            async with asyncio.timeout(timeout):
                async for msg in sub.messages:
                    if not is_deletion(msg):
                        key = msg.subject[len(self.prefix) :]
                        found.append((key, msg.data, msg.metadata.sequence.stream))
                    if msg.metadata.num_pending == 0:
                        break
        finally:
            await sub.unsubscribe()
        return found

    async def keys(self, pattern: str) -> list[str]:
        """The live keys matching the subject-style `pattern`."""
        return [key for key, _ in await self.values(pattern, headers_only=True)]

    async def page_after(
        self, after: int, want: int, *, scan: int, timeout: float = 30.0
    ) -> tuple[list[tuple[str, bytes, int]], int]:
        """Up to `want` live records (key, value, revision) written after revision
        `after`, in the order they were last written, and the revision to continue
        after (0 at the end).

        The bucket's stream holds one message per live key (its last revision) and
        one per deletion: a page reads its own records and the deletions among them,
        at most `scan` messages, however large the bucket.
        """
        sub = await self.js.subscribe(
            f"{self.prefix}>",
            stream=self.stream,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
            config=js_api.ConsumerConfig(opt_start_seq=after + 1),
        )
        found: list[tuple[str, bytes, int]] = []
        last = 0
        try:
            info = await sub.consumer_info()
            if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
                return found, 0
            async with asyncio.timeout(timeout):
                async for msg in sub.messages:
                    last = msg.metadata.sequence.stream
                    if not is_deletion(msg):
                        found.append((msg.subject[len(self.prefix) :], msg.data, last))
                    if msg.metadata.num_pending == 0:
                        return found, 0
                    scan -= 1
                    if len(found) >= want or scan <= 0:
                        return found, last
        finally:
            await sub.unsubscribe()
        return found, last
