"""Listing KV records: every live record, every time, also right after a write."""

from __future__ import annotations

import nats

from llama_mesh.jetstream.buckets import ProtoBucket, keys_matching
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2


async def test_scan_sees_every_record_right_after_writes(nats: EmbeddedNats) -> None:
    # nats-py's KeyValue.watch could report "no initial values" before delivering
    # values the server had already pushed; a listing then came back empty.
    nc = await nats_connect(nats.url)
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(bucket="scan_test", history=1)
        bucket = ProtoBucket(kv, resources_pb2.Session, "session")
        assert await bucket.scan() == []
        for i in range(100):
            await bucket.put(f"s{i}.k", resources_pb2.Session(name=f"sessions/s{i}"))
            listed = await bucket.scan(f"s{i}.*")
            assert [s.name for _, s in listed] == [f"sessions/s{i}"]
            assert await keys_matching(kv, f"s{i}.*") == [f"s{i}.k"]
        await bucket.delete("s0.k")
        assert len(await bucket.scan()) == 99
        assert "s0.k" not in await keys_matching(kv, ">")
    finally:
        await nc.close()


async def nats_connect(url: str) -> nats.aio.client.Client:
    return await nats.connect(url)
