"""Reading the live keys of a KV bucket once, which nats-py's KeyValue cannot do safely.

Not `KeyValue.watch` (nor `KeyValue.keys`, built on it): a listing could come back
empty while values wait behind the watch callback (messages_so_far.py says why), and
`keys` also matches filters as substrings, not subjects. This reads the bucket's
stream with messages_so_far, filtered by the server.

A KeyValue keeps its JetStream context, stream and subject prefix private, so this
reads the bucket through its layout as NATS ADR-8 defines it for every client
(stream `KV_{bucket}`, subjects `$KV.{bucket}.{key}`, deletes and purges marked by a
`KV-Operation` header). tests/test_store.py checks that layout against what nats-py's
KeyValue reports of the same bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE

from llama_mesh.jetstream.messages_so_far import messages_so_far

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
        found: list[tuple[str, bytes, int]] = []
        async with messages_so_far(
            self.js,
            f"{self.prefix}{pattern}",
            stream=self.stream,
            deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
            headers_only=headers_only,
            timeout=timeout,
        ) as messages:
            async for msg in messages:
                if not is_deletion(msg):
                    key = msg.subject[len(self.prefix) :]
                    found.append((key, msg.data, msg.metadata.sequence.stream))
        return found

    async def keys(self, pattern: str) -> list[str]:
        """The live keys matching the subject-style `pattern`."""
        return [key for key, _ in await self.values(pattern, headers_only=True)]
