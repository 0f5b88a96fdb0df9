"""Waiting for a KV record to expire: the marker the server leaves (no polling)."""

from __future__ import annotations

import nats as nats_py
from nats.js.kv import KV_PURGE


async def expired(url: str, bucket: str, key: str) -> None:
    """Return once the record `key` of `bucket` expires (or is purged)."""
    nc = await nats_py.connect(url)
    try:
        kv = await nc.jetstream().key_value(bucket)
        watcher = await kv.watch(key)
        async for entry in watcher:
            if entry is not None and entry.operation == KV_PURGE:
                return
    finally:
        await nc.close()
