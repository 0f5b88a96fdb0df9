"""Protobuf records in JetStream KV buckets, with compare-and-set updates.

Every writer of a record goes through ``ProtoBucket.mutate``: read, change, write with
the revision it read, and start again if another writer got there first. That is
what lets any number of control-plane and service replicas share one record.

A write may give the record a time to live (JetStream's per-message TTL): the server
deletes it then, unless a later write replaced it. That is how finished tasks and idle
sessions expire.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from llama_mesh.core.errors import NotFoundError
from llama_mesh.jetstream.errors import store_errors
from llama_mesh.jetstream.kv_listing import KvListing
from llama_mesh.jetstream.kv_ttl import msg_ttl, update_with_ttl
from llama_mesh.jetstream.topology import EXPIRY_MARKER_TTL

M = TypeVar("M", bound=Message)


class Unchanged(Exception):
    """Raised by a mutate callback to leave the record as it is."""


class ProtoBucket(Generic[M]):
    """One KV bucket whose values are messages of one protobuf type."""

    def __init__(self, kv: KeyValue, listing: KvListing, message_type: type[M], what: str) -> None:
        self.kv = kv
        self._listing = listing
        self._type = message_type
        self._what = what

    @classmethod
    async def open(
        cls, js: JetStreamContext, bucket: str, message_type: type[M], what: str
    ) -> ProtoBucket[M]:
        """The existing bucket named `bucket`; `what` names its records in errors."""
        return cls(await js.key_value(bucket), KvListing(js, bucket), message_type, what)

    def _decode(self, data: bytes | None) -> M:
        message = self._type()
        message.ParseFromString(data or b"")
        return message

    async def find(self, key: str) -> tuple[M, int] | None:
        """The record and its revision, or None (never written, deleted, or expired:
        an expired record's marker has no value)."""
        try:
            entry = await self.kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if not entry.value:
            return None
        assert entry.revision is not None
        return self._decode(entry.value), entry.revision

    async def get(self, key: str, name: str) -> M:
        """The record; NotFoundError naming `name` if there is none."""
        found = await self.find(key)
        if found is None:
            raise NotFoundError(f"{self._what} {name!r} not found")
        return found[0]

    async def create(self, key: str, message: M, *, ttl: float | None = None) -> int | None:
        """Write a new record (kept `ttl` seconds if given); None if the key exists."""
        data = message.SerializeToString()
        try:
            with store_errors(f"writing {self._what} {key!r}"):
                return await self.kv.create(key, data, msg_ttl=msg_ttl(ttl))
        except KeyWrongLastSequenceError:
            pass
        # nats-py recreates a deleted key, but not one whose record expired: the
        # server's marker there has no KV-Operation. Write over the marker.
        try:
            entry = await self.kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None  # written and deleted again meanwhile: let the caller look
        if entry.value or entry.revision is None:
            return None
        try:
            with store_errors(f"writing {self._what} {key!r}"):
                return await update_with_ttl(
                    self._listing.js, self._listing.bucket, key, data, last=entry.revision, ttl=ttl
                )
        except KeyWrongLastSequenceError:
            return None

    async def put(self, key: str, message: M) -> int:
        with store_errors(f"writing {self._what} {key!r}"):
            return await self.kv.put(key, message.SerializeToString())

    async def delete(self, key: str) -> None:
        """Delete the record. What marks it deleted (for watchers) expires too: a
        bucket keeps nothing of what was deleted."""
        with store_errors(f"deleting {self._what} {key!r}"):
            await self.kv.purge(key, msg_ttl=EXPIRY_MARKER_TTL)

    async def mutate(
        self,
        key: str,
        name: str,
        change: Callable[[M], None],
        *,
        ttl: Callable[[M], float | None] | None = None,
    ) -> M:
        """Apply `change` to the record with compare-and-set, retrying on conflict.

        `change` edits the message in place, or raises Unchanged to leave it (the
        current record is returned), or raises a MeshError to refuse. `ttl` says how
        long the changed record is kept (None: until changed or deleted).
        """
        return (await self.mutate_from(key, name, change, None, ttl=ttl))[0]

    async def mutate_from(
        self,
        key: str,
        name: str,
        change: Callable[[M], None],
        known: tuple[M, int] | None,
        *,
        ttl: Callable[[M], float | None] | None = None,
    ) -> tuple[M, int]:
        """`mutate`, starting from a record and revision read before (saves a read
        when nobody wrote in between); returns the record and its new revision."""
        while True:
            if known is not None:
                found: tuple[M, int] | None = (self._copy(known[0]), known[1])
                known = None
            else:
                found = await self.find(key)
            if found is None:
                raise NotFoundError(f"{self._what} {name!r} not found")
            message, revision = found
            try:
                change(message)
            except Unchanged:
                return message, revision
            try:
                with store_errors(f"writing {self._what} {key!r}"):
                    revision = await update_with_ttl(
                        self._listing.js,
                        self._listing.bucket,
                        key,
                        message.SerializeToString(),
                        last=revision,
                        ttl=ttl(message) if ttl is not None else None,
                    )
            except KeyWrongLastSequenceError:
                continue
            return message, revision

    async def wait_for(
        self, key: str, done: Callable[[M], bool], timeout: float
    ) -> tuple[M, int] | None:
        """The record and its revision once `done` says so, watching the key (no
        polling); None if it is deleted or `timeout` seconds pass first."""
        with store_errors(f"watching {self._what} {key!r}"):
            watcher: Any = await self.kv.watch(key)  # nats-py's KeyWatcher is untyped
        try:
            async with asyncio.timeout(timeout):
                async for entry in watcher:
                    if entry is None:
                        continue  # the end of what was there when the watch began
                    if not entry.value:
                        return None
                    message = self._decode(entry.value)
                    if done(message):
                        assert entry.revision is not None
                        return message, entry.revision
        except TimeoutError:
            return None
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()
        return None

    def _copy(self, message: M) -> M:
        copy = self._type()
        copy.CopyFrom(message)
        return copy

    async def scan(self, pattern: str = ">") -> list[tuple[str, M]]:
        """All records whose key matches the subject-style `pattern`."""
        return [
            (key, self._decode(value))
            for key, value in await self._listing.values(pattern)
            if value
        ]
