"""Compare-and-set writes to a KV bucket that carry a per-message TTL.

nats-py's KeyValue.create takes a TTL and KeyValue.update does not; this is the write
update makes, as NATS ADR-8 defines it for every client (a publish on the key's
subject `$KV.{bucket}.{key}` that expects the key's last revision), with the TTL.
The server deletes the record once its TTL passes unless a later write replaced it.

    revision = await update_with_ttl(js, "mesh_tasks", key, data, last=revision, ttl=3600)
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import Header
from nats.js.errors import APIError, KeyWrongLastSequenceError

from llama_mesh.jetstream.api_errors import WRONG_LAST_SEQUENCE


def msg_ttl(seconds: float | None) -> float | None:
    """A TTL JetStream takes (whole seconds, at least one), or None for none."""
    return None if seconds is None or seconds <= 0 else float(max(int(seconds), 1))


async def update_with_ttl(
    js: JetStreamContext, bucket: str, key: str, data: bytes, *, last: int, ttl: float | None
) -> int:
    """Write `data` at `key` if its last revision is `last`, kept `ttl` seconds (None:
    until replaced); its new revision. KeyWrongLastSequenceError if the key moved on."""
    try:
        ack = await js.publish(
            f"$KV.{bucket}.{key}",
            data,
            headers={Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last)},
            msg_ttl=msg_ttl(ttl),
        )
    except APIError as err:
        if getattr(err, "err_code", None) in WRONG_LAST_SEQUENCE:
            raise KeyWrongLastSequenceError(description=err.description) from None
        raise
    return int(ack.seq)
