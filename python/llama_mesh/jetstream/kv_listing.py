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

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE

_DELETED = (KV_DEL, KV_PURGE)


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
        sub = await self.js.subscribe(
            f"{self.prefix}{pattern}",
            stream=self.stream,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            headers_only=headers_only,
        )
        found: list[tuple[str, bytes]] = []
        try:
            info = await sub.consumer_info()
            if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
                return found
            async with asyncio.timeout(timeout):
                async for msg in sub.messages:
                    operation = msg.headers.get(KV_OP) if msg.headers else None
                    if operation not in _DELETED:
                        found.append((msg.subject[len(self.prefix) :], msg.data))
                    if msg.metadata.num_pending == 0:
                        break
        finally:
            await sub.unsubscribe()
        return found

    async def keys(self, pattern: str) -> list[str]:
        """The live keys matching the subject-style `pattern`."""
        return [key for key, _ in await self.values(pattern, headers_only=True)]
