"""Ack ids: what the Queue API hands out for each delivered message, and reads back.

Behind each ack id is the message's JetStream reply subject (ADR-15):
``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>``,
or with ``<domain>.<account hash>`` after ``ACK`` and a token at the end. The
subscriber never sees it bare: the ack id it gets is that subject and the topic it
subscribed to, signed (HMAC-SHA256) for the identity that subscribed, with a key the
control planes share (jetstream/secrets.py). So any control-plane replica can answer
it, and an ack id is accepted only from the identity it was given to, for its own
topic; one that was made up, edited, or taken from another subscriber is refused.

    signer = AckIdSigner(key)
    ack_id = signer.issue(msg.reply, "apiKeys/echo", "topics/tasks.echo")
    signer.open(ack_id, "apiKeys/echo")   # SignedAckId(reply=AckId(...), topic=...)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

from llama_mesh.core.errors import InvalidArgumentError, PermissionDeniedError

_ACK_ID = re.compile(r"\$JS\.ACK\.[A-Za-z0-9_.-]+")
_VERSION = "lma1"

ACK = b"+ACK"
IN_PROGRESS = b"+WPI"


@dataclass(frozen=True)
class AckId:
    """A parsed JetStream reply subject."""

    text: str
    stream: str
    consumer: str
    delivery_count: int  # 1 on the first delivery

    @classmethod
    def parse(cls, text: str) -> AckId | None:
        """The reply subject in `text`; None if it is not one."""
        if not _ACK_ID.fullmatch(text):
            return None
        tokens = text.split(".")
        if len(tokens) == 9:
            fields = tokens[2:5]
        elif len(tokens) >= 11:
            fields = tokens[4:7]
        else:
            return None
        stream, consumer, delivered = fields
        if not (stream and consumer and delivered.isdigit()):
            return None
        return cls(text, stream, consumer, int(delivered))


@dataclass(frozen=True)
class SignedAckId:
    """An ack id the Queue API gave out: the delivery it answers, and its topic."""

    reply: AckId
    topic: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AckIdSigner:
    """Issues ack ids and opens them again, with the control planes' shared key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("an ack id key needs at least 32 bytes")
        self._key = key

    def _mac(self, body: bytes, subscriber: str) -> bytes:
        # The subscriber is signed, not written: an ack id says nothing about who
        # holds it, and opens only for that identity.
        message = body + b"\0" + subscriber.encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def issue(self, reply: str, subscriber: str, topic: str) -> str:
        """The ack id of delivery `reply` on `topic`, for identity `subscriber`."""
        body = json.dumps([reply, topic], separators=(",", ":")).encode()
        return f"{_VERSION}.{_b64(body)}.{_b64(self._mac(body, subscriber))}"

    def open(self, ack_id: str, subscriber: str) -> SignedAckId:
        """The delivery behind `ack_id`, if it was issued to `subscriber`.

        InvalidArgumentError if it is not an ack id at all; PermissionDeniedError if
        it was not issued to `subscriber` (or was altered).
        """
        version, _, rest = ack_id.partition(".")
        body_text, _, mac_text = rest.partition(".")
        try:
            if version != _VERSION:
                raise ValueError(version)
            body, mac = _unb64(body_text), _unb64(mac_text)
            reply_text, topic = json.loads(body)
            reply = AckId.parse(reply_text) if isinstance(reply_text, str) else None
            if reply is None or not isinstance(topic, str):
                raise ValueError(body)
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            raise InvalidArgumentError(
                f"{ack_id[:80]!r} is not an ack id: pass the ack_id of a message "
                "Subscribe delivered, unchanged"
            ) from None
        if not hmac.compare_digest(mac, self._mac(body, subscriber)):
            raise PermissionDeniedError(
                f"ack id {ack_id[:80]!r} was not given to {subscriber} by Subscribe: an ack id "
                "answers only the subscription it came from"
            )
        return SignedAckId(reply, topic)


def nak(delay_ns: int) -> bytes:
    """The reply that hands a message back, delivered again after `delay_ns`."""
    return b"-NAK" + (f" {json.dumps({'delay': delay_ns})}".encode() if delay_ns else b"")
