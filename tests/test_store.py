"""Listing KV records: every live record, every time, also right after a write."""

from __future__ import annotations

import nats
from nats.aio.client import Client as NatsClient

from llama_mesh.jetstream.buckets import ProtoBucket
from llama_mesh.jetstream.kv_listing import KvListing
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2


async def test_scan_sees_every_record_right_after_writes(nats: EmbeddedNats) -> None:
    # nats-py's KeyValue.watch could report "no initial values" before delivering
    # values the server had already pushed; a listing then came back empty.
    nc = await nats_connect(nats.url)
    try:
        js = nc.jetstream()
        await js.create_key_value(bucket="scan_test", history=1)
        bucket = await ProtoBucket.open(js, "scan_test", resources_pb2.Session, "session")
        listing = KvListing(js, "scan_test")
        assert await bucket.scan() == []
        for i in range(100):
            await bucket.put(f"s{i}.k", resources_pb2.Session(name=f"sessions/s{i}"))
            listed = await bucket.scan(f"s{i}.*")
            assert [s.name for _, s in listed] == [f"sessions/s{i}"]
            assert await listing.keys(f"s{i}.*") == [f"s{i}.k"]
        await bucket.delete("s0.k")
        assert len(await bucket.scan()) == 99
        assert "s0.k" not in await listing.keys(">")
    finally:
        await nc.close()


async def test_listing_reads_the_bucket_where_nats_py_keeps_it(nats: EmbeddedNats) -> None:
    # KvListing cannot ask a KeyValue where its values live (nats-py keeps that
    # private): it follows ADR-8's layout, which must be where KeyValue writes.
    nc = await nats_connect(nats.url)
    try:
        js = nc.jetstream()
        kv = await js.create_key_value(bucket="layout_test", history=1)
        listing = KvListing(js, "layout_test")
        status = await kv.status()
        assert status.stream_info.config.name == listing.stream
        assert status.stream_info.config.subjects == [f"{listing.prefix}>"]
        await kv.put("a.b", b"1")
        await kv.put("a.c", b"2")
        await kv.delete("a.c")
        await kv.put("d.e", b"3")
        await kv.purge("d.e")
        assert await listing.values("a.*") == [("a.b", b"1")]
        assert await listing.keys(">") == ["a.b"]
    finally:
        await nc.close()


async def nats_connect(url: str) -> NatsClient:
    return await nats.connect(url)
