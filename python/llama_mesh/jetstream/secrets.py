"""Keys the control planes share, in the `{prefix}_secrets` KV bucket.

Only control planes may read this bucket (a service replica's NATS user has no
access to it, launch/nats_users.py): whatever a key signs, only a control plane
can have signed. The first control plane to ask for a key makes it; every other
one reads the same bytes.

    key = await shared_key(state.js, state.topology, "ack_ids")
"""

from __future__ import annotations

import logging
import os

from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError

from llama_mesh.jetstream.topology import Topology

logger = logging.getLogger(__name__)

KEY_BYTES = 32


async def shared_key(js: JetStreamContext, topology: Topology, name: str) -> bytes:
    """The key called `name`, made (256 random bits) by whoever asks first."""
    kv = await js.key_value(topology.bucket("secrets"))
    try:
        await kv.create(name, os.urandom(KEY_BYTES))
        logger.info("secrets: made key %s", name)
    except KeyWrongLastSequenceError:
        pass  # another control plane made it first
    entry = await kv.get(name)
    if entry.value is None or len(entry.value) < KEY_BYTES:
        raise RuntimeError(
            f"the shared key {name!r} in bucket {topology.bucket('secrets')} is shorter than "
            f"{KEY_BYTES} bytes: delete it and restart the control planes to make a new one"
        )
    return entry.value
