"""Ack ids: what the Queue API hands out for each delivered message, and reads back.

An ack id is the message's JetStream reply subject (ADR-15):
``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>``,
or with ``<domain>.<account hash>`` after ``ACK`` and a token at the end. Any
control-plane replica can answer it; it names the consumer, so a reply can be checked
against the topic (or task) it claims to be for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_ACK_ID = re.compile(r"\$JS\.ACK\.[A-Za-z0-9_.-]+")

ACK = b"+ACK"
IN_PROGRESS = b"+WPI"


@dataclass(frozen=True)
class AckId:
    """A parsed ack id."""

    text: str
    stream: str
    consumer: str
    delivery_count: int  # 1 on the first delivery

    @classmethod
    def parse(cls, text: str) -> AckId | None:
        """The ack id in `text`; None if it is not one."""
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


def nak(delay_ns: int) -> bytes:
    """The reply that hands a message back, delivered again after `delay_ns`."""
    return b"-NAK" + (f" {json.dumps({'delay': delay_ns})}".encode() if delay_ns else b"")
