"""The replica's part of token latency: from a run handing an event over to the event
being stored in JetStream, each publish awaited in turn vs the attempt's outbox.

    .venv/bin/python bench/event_publish_bench.py [--events 200] [--runs 3]

One nats-server (its own process) and this process's connection, as a replica has. A
producer hands `--events` events over at a fixed pace, like a model's tokens (every 10
ms, every 1 ms, or all at once), each at its scheduled time unless the producer is still
held by an earlier one. Per event: the time from its scheduled time to the store's
acknowledgement, so the queueing behind earlier publishes counts. "awaited" is how the
replica published before (TaskJournal.publish, awaited before the next event);
"outbox" is worker/event_outbox.py (TaskJournal.publish_many, one batch in flight).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stats import summary

from llama_mesh.core.names import TaskName, new_id
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import Outgoing, TaskJournal
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.event_outbox import EventOutbox

BENCH = Path(__file__).resolve().parent


@dataclass
class StampingJournal(TaskJournal):
    """The journal, noting when each event's acknowledgement came (perf_counter_ns)."""

    stored: dict[str, int] = field(default_factory=dict)

    async def publish_many(
        self, name: TaskName, events: Sequence[Outgoing], *, ttl: float | None = None
    ) -> list[int]:
        sequences = await super().publish_many(name, events, ttl=ttl)
        now = time.perf_counter_ns()
        for _, event_id in events:
            self.stored[event_id] = now
        return sequences


def _delta(i: int) -> resources_pb2.TaskEvent:
    event = resources_pb2.TaskEvent(type="llama_mesh.agent.TextDelta")
    event.payload.struct_value.fields["delta"].string_value = f"t{i} "
    event.payload.struct_value.fields["index"].number_value = i
    return event


async def _produce(events: int, interval: float, hand_over: Any, ids: list[str]) -> list[int]:
    """Hand the events over at their scheduled times; when each was due (ns): its
    scheduled time if the producer was late for it (held by earlier events), else when
    the producer woke for it (a timer wakes up to a millisecond late: not counted)."""
    start = time.perf_counter_ns() + 1_000_000
    due: list[int] = []
    for i in range(events):
        at = start + int(i * interval * 1e9)
        ahead = (at - time.perf_counter_ns()) / 1e9
        if ahead > 0:
            await asyncio.sleep(ahead)  # the model's pace, not a wait for readiness
            at = time.perf_counter_ns()
        due.append(at)
        await hand_over(_delta(i), ids[i])
    return due


async def leg(state: MeshState, mode: str, events: int, interval: float) -> list[int]:
    """Per event, scheduled -> stored (ns)."""
    journal = StampingJournal(state.js, state.topology, state.tasks, state.waiting)
    name = TaskName(new_id(), new_id())
    ids = [new_id() for _ in range(events)]
    if mode == "awaited":

        async def publish(event: resources_pb2.TaskEvent, event_id: str) -> None:
            await journal.publish(name, event, event_id=event_id)
            journal.stored[event_id] = time.perf_counter_ns()

        scheduled = await _produce(events, interval, publish, ids)
    else:
        async with EventOutbox(journal, name, None) as outbox:
            scheduled = await _produce(events, interval, outbox.put, ids)
            await outbox.flushed()
    return [journal.stored[i] - at for i, at in zip(ids, scheduled, strict=True)]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    load_start = os.getloadavg()[0]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            EmbeddedNats.start(Path(tmp) / "nats") as nats,
            MeshState.connect([nats.url]) as state,
        ):
            await leg(state, "outbox", 20, 0.0)  # warm-up (the ack subscription)
            for interval_ms in (10.0, 1.0, 0.0):
                for mode in ("awaited", "outbox"):
                    samples: list[int] = []
                    for _ in range(args.runs):
                        samples += await leg(state, mode, args.events, interval_ms / 1000)
                    result = summary(samples)
                    results[f"{mode}, every {interval_ms:g} ms"] = result
                    print(
                        f"{mode:8} every {interval_ms:>4g} ms: handed over -> stored "
                        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms",
                        flush=True,
                    )
    load_end = os.getloadavg()[0]
    print(f"load average {load_start:.2f} -> {load_end:.2f} on {os.cpu_count()} CPUs")
    return {"load": [load_start, load_end], "cpus": os.cpu_count(), "legs": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    out = asyncio.run(main_async(args))
    path = BENCH / "results" / "event_publish.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"JSON: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
