"""The API keys the mesh issued, in the `{prefix}_api_keys` KV bucket.

Each process that checks tokens keeps the keys in memory, kept current by a watch on
the bucket, so checking a token costs a dictionary lookup and a hash, and a revoked
key stops working everywhere as soon as its deletion arrives. A key not yet seen by
the watch (created a moment ago through another control plane) is read from the
bucket. Revisions decide: a read that raced with a deletion cannot bring a key back.

    async with ApiKeyStore.open(state.js, topology) as keys:
        token, key = await keys.create("ci", auth_pb2.ApiKey(roles=["client"]))
        stored = await keys.lookup("ci")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from llama_mesh.core import proto_time
from llama_mesh.core.access import check_key_id, check_namespace, check_role, key_name, new_secret
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.tasks import cancel_and_wait
from llama_mesh.jetstream.buckets import ProtoBucket
from llama_mesh.jetstream.topology import Topology
from llama_mesh.v1 import auth_pb2

logger = logging.getLogger(__name__)


class ApiKeyStore:
    """Issued API keys: stored hashed, cached in memory, watched for changes."""

    def __init__(self, bucket: ProtoBucket[auth_pb2.StoredApiKey]) -> None:
        self.bucket = bucket
        # key id -> (revision, record or None for a deleted key)
        self._known: dict[str, tuple[int, auth_pb2.StoredApiKey | None]] = {}
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, js: JetStreamContext, topology: Topology) -> AsyncIterator[ApiKeyStore]:
        store = cls(
            await ProtoBucket.open(
                js, topology.bucket("api_keys"), auth_pb2.StoredApiKey, "API key"
            )
        )
        watcher = await store.bucket.kv.watch(">")
        store._watch = asyncio.create_task(store._follow(watcher))
        try:
            yield store
        finally:
            await cancel_and_wait(store._watch)

    def _learn(self, key_id: str, revision: int, stored: auth_pb2.StoredApiKey | None) -> None:
        known = self._known.get(key_id)
        if known is None or revision > known[0]:
            self._known[key_id] = (revision, stored)

    async def _follow(self, watcher: Any) -> None:
        try:
            async for entry in watcher:
                if entry is None:  # end of the initial values
                    continue
                deleted = entry.operation is not None or not entry.value
                stored = None if deleted else auth_pb2.StoredApiKey.FromString(entry.value)
                self._learn(entry.key, entry.revision or 0, stored)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def lookup(self, key_id: str) -> auth_pb2.StoredApiKey | None:
        """The stored key, or None if there is none."""
        known = self._known.get(key_id)
        if known is not None:
            return known[1]
        try:
            entry = await self.bucket.kv.get(key_id)
        except KeyNotFoundError:
            return None
        if entry.value:
            self._learn(key_id, entry.revision or 0, auth_pb2.StoredApiKey.FromString(entry.value))
        known = self._known.get(key_id)
        return None if known is None else known[1]

    async def create(
        self, key_id: str, key: auth_pb2.ApiKey, *, token: tuple[str, str] | None = None
    ) -> tuple[str, auth_pb2.ApiKey] | None:
        """Issue a key: (token, key), or None if `key_id` is taken. `token` (the token
        and its secret's digest) imports a token made elsewhere (e.g. by `up`)."""
        check_key_id(key_id)
        if not key.roles:
            raise InvalidArgumentError("api_key.roles is required: e.g. ['client']")
        for role in key.roles:
            check_role(role)
        if key.namespace:
            check_namespace(key.namespace, "api_key.namespace")
        made, digest = token or new_secret(key_id)
        stored = auth_pb2.StoredApiKey(secret_sha256=digest)
        stored.api_key.CopyFrom(key)
        stored.api_key.name = key_name(key_id)
        stored.api_key.create_time.CopyFrom(proto_time.now())
        stored.api_key.ClearField("rotate_time")
        revision = await self.bucket.create(key_id, stored)
        if revision is None:
            return None
        self._learn(key_id, revision, stored)
        logger.info("API key %s created (roles %s)", key_id, list(key.roles))
        return made, stored.api_key

    async def install(self, key_id: str, roles: list[str], secret_digest: str) -> None:
        """Make sure key `key_id` exists with these roles and secret (idempotent): how
        a launcher hands the mesh the keys it generated (the admin token of `up`)."""
        check_key_id(key_id)
        for role in roles:
            check_role(role)
        found = await self.bucket.find(key_id)
        if found is not None:
            current = found[0]
            if current.secret_sha256 == secret_digest and list(current.api_key.roles) == roles:
                return
        stored = auth_pb2.StoredApiKey(secret_sha256=secret_digest)
        stored.api_key.name = key_name(key_id)
        stored.api_key.roles.extend(roles)
        stored.api_key.description = "installed at start-up"
        stored.api_key.create_time.CopyFrom(proto_time.now())
        self._learn(key_id, await self.bucket.put(key_id, stored), stored)
        logger.info("API key %s installed (roles %s)", key_id, roles)

    async def get(self, key_id: str) -> auth_pb2.ApiKey:
        return (await self.bucket.get(key_id, key_name(key_id))).api_key

    async def list(self) -> list[tuple[str, auth_pb2.ApiKey]]:
        return [(k, stored.api_key) for k, stored in await self.bucket.scan()]

    async def rotate(self, key_id: str, grace: float) -> tuple[str, auth_pb2.ApiKey]:
        """A new secret for the key; the old one stays valid for `grace` seconds."""
        token, digest = new_secret(key_id)

        def change(stored: auth_pb2.StoredApiKey) -> None:
            if grace > 0:
                stored.previous_secret_sha256 = stored.secret_sha256
                stored.previous_expire_time.CopyFrom(proto_time.timestamp(time.time() + grace))
            else:
                stored.previous_secret_sha256 = ""
                stored.ClearField("previous_expire_time")
            stored.secret_sha256 = digest
            stored.api_key.rotate_time.CopyFrom(proto_time.now())

        stored, revision = await self.bucket.mutate_from(key_id, key_name(key_id), change, None)
        self._learn(key_id, revision, stored)
        logger.info("API key %s rotated (old secret valid %.0fs)", key_id, grace)
        return token, stored.api_key

    async def delete(self, key_id: str) -> None:
        await self.bucket.get(key_id, key_name(key_id))
        await self.bucket.delete(key_id)
        known = self._known.get(key_id)
        self._learn(key_id, (known[0] if known else 0) + 1, None)
        logger.info("API key %s deleted", key_id)
