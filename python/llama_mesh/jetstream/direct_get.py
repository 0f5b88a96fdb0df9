"""Reading stored messages by sequence without a consumer: JetStream's batched direct
get (``$JS.API.DIRECT.GET.{stream}``, nats-server 2.11+; the stream needs
``allow_direct``). One request returns up to ``batch`` messages on a subject from a
sequence on, each saying how many more match after it, then an end marker.

    found = await direct_batch(nc, "MESH_CREATED", subject="mesh.created.s1", start=1, batch=50)

With no subject it reads every message from the sequence on: on a stream of many
subjects that keeps the server from matching a filter against each of them.

nats-py asks for one message per request only; a listing page would be a round trip
per task.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from llama_mesh.core.errors import UnavailableError


@dataclass(frozen=True)
class Stored:
    """A stored message: its sequence, subject, data, how many messages on the
    requested subject come after it, and when it was stored (epoch seconds)."""

    seq: int
    subject: str
    data: bytes
    pending: int
    stored_at: float = 0.0


async def direct_batch(
    nc: NatsClient,
    stream: str,
    *,
    subject: str | None,
    start: int,
    batch: int,
    start_time: float | None = None,
    timeout: float = 10.0,
) -> list[Stored]:
    """Up to `batch` messages on `subject` (wildcards allowed; None: any) from
    sequence `start` on (or, with `start_time`, from the first stored at or after
    that time, in epoch seconds), in order; [] if there are none."""
    if batch < 1:
        return []
    inbox = nc.new_inbox()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    found: list[Stored] = []

    async def on_reply(msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is not None:
            # 204: the end of the batch; 404: nothing matched; 408: the request was bad.
            if not done.done():
                if status in ("204", "404"):
                    done.set_result(None)
                else:
                    done.set_exception(
                        UnavailableError(
                            f"direct get on {stream}: {status} {headers.get('Description', '')}"
                        )
                    )
            return
        found.append(
            Stored(
                seq=int(headers["Nats-Sequence"]),
                subject=headers["Nats-Subject"],
                data=msg.data,
                pending=int(headers.get("Nats-Num-Pending", "0")),
                stored_at=_epoch(headers.get("Nats-Time-Stamp", "")),
            )
        )

    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        request: dict[str, object] = {"batch": batch}
        if start_time is None:
            request["seq"] = max(start, 1)
        else:
            request["start_time"] = datetime.fromtimestamp(start_time, UTC).isoformat()
        if subject is not None:
            request["next_by_subj"] = subject
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=inbox)
        async with asyncio.timeout(timeout):
            await done
    except TimeoutError:
        raise UnavailableError(f"direct get on {stream} got no answer in {timeout:g}s") from None
    finally:
        await sub.unsubscribe()
    return found


def _epoch(stamp: str) -> float:
    """Epoch seconds of the server's RFC 3339 time stamp (0.0 if there is none)."""
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


async def count_from(nc: NatsClient, stream: str, subject: str, start: int) -> tuple[int, int]:
    """(the sequence of the first message on `subject` at or after `start`, how many
    there are from it on); (0, 0) if none."""
    [*first] = await direct_batch(nc, stream, subject=subject, start=start, batch=1)
    if not first:
        return 0, 0
    return first[0].seq, first[0].pending + 1
