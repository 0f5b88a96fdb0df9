"""The JetStream error codes the mesh acts on are the ones this nats-server sends."""

from __future__ import annotations

import json

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import api
from nats.js.errors import BadRequestError

from llama_mesh.jetstream.api_errors import (
    CONSUMER_EXISTS,
    JS_STREAM_NAME_EXIST,
    WRONG_LAST_SEQUENCE,
)
from llama_mesh.launch.nats_server import EmbeddedNats


async def test_each_named_code_is_what_the_server_answers(nats: EmbeddedNats) -> None:
    nc = await nats_connect(nats.url)
    try:
        js = nc.jetstream()
        await js.add_stream(api.StreamConfig(name="codes", subjects=["codes.>"]))
        with pytest.raises(BadRequestError) as stream_exists:
            await js.add_stream(api.StreamConfig(name="codes", subjects=["other.>"]))
        assert stream_exists.value.err_code == JS_STREAM_NAME_EXIST

        # nats-py's add_consumer updates an existing consumer; the server answers
        # "exists" to a request whose `action` says it means to create only.
        await js.add_consumer("codes", api.ConsumerConfig(durable_name="c", ack_wait=30.0))
        create = {
            "stream_name": "codes",
            "action": "create",
            "config": {"durable_name": "c", "name": "c", "ack_wait": 60_000_000_000},
        }
        reply = await nc.request("$JS.API.CONSUMER.CREATE.codes.c", json.dumps(create).encode())
        assert json.loads(reply.data)["error"]["err_code"] in CONSUMER_EXISTS

        kv = await js.create_key_value(bucket="codes_kv", history=1)
        revision = await kv.put("k", b"1")
        await kv.put("k", b"2")
        with pytest.raises(BadRequestError) as lost:
            await kv.delete("k", last=revision)
        assert lost.value.err_code in WRONG_LAST_SEQUENCE
    finally:
        await nc.close()


async def nats_connect(url: str) -> NatsClient:
    return await nats.connect(url)
