"""StreamTaskEvents follows its task as the event stream republishes what it stores
(jetstream/live_events.py), not through a consumer per stream (issue 14, token
latency): in order, none twice, and what the control plane missed live is read from
the stream. Live messages are lost at the exact point where they arrive (the control
plane's subscription callback), as a dropped connection would have it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.aio.msg import Msg

from llama_mesh.v1 import resources_pb2

from paused_echo import PausedEcho

RUNNING = resources_pb2.TASK_STATE_RUNNING
SUCCEEDED = resources_pb2.TASK_STATE_SUCCEEDED


def _n(data: bytes) -> int:
    event = resources_pb2.Envelope.FromString(data).task_event
    return int(event.payload.struct_value.fields["n"].number_value)


async def test_a_tasks_stream_follows_it_live_and_reads_what_it_missed_from_the_stream(
    paused_echo: PausedEcho, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, handle, name = paused_echo.state, paused_echo.handle, paused_echo.name

    # The odd-numbered events never reach the stream's live subscription.
    following = asyncio.Event()
    subscribe = state.nc.subscribe

    async def hooked(subject: str, cb: Any = None, **kwargs: Any) -> Any:
        if cb is not None and name.task_id in subject and ".live." in subject:
            deliver = cb

            async def cb(msg: Msg) -> None:
                if msg.subject.endswith(".end") or _n(msg.data) % 2 == 0:
                    await deliver(msg)

            following.set()
        return await subscribe(subject, cb=cb, **kwargs)

    monkeypatch.setattr(state.nc, "subscribe", hooked)
    events = handle.events()
    first = asyncio.ensure_future(anext(events))
    await asyncio.wait_for(following.wait(), 10)

    journal = state.journal
    running = resources_pb2.TaskEvent(state=RUNNING, attempt=1)
    await journal.record(name, running, publish=False)
    for n in range(6):
        event = resources_pb2.TaskEvent(type="Progress", attempt=1)
        event.payload.struct_value.update({"n": n})
        await journal.publish(name, event)
    streamed = [await asyncio.wait_for(first, 10)]
    done = resources_pb2.TaskEvent(type="StopEvent", state=SUCCEEDED, attempt=1)
    done.payload.string_value = "r"
    await journal.record(name, done)
    streamed += [event async for event in events]

    assert [e.type for e in streamed] == ["Progress"] * 6 + ["StopEvent"]
    assert [e.payload["n"] for e in streamed[:6]] == list(range(6))
    sequences = [e.sequence for e in streamed]
    assert sequences == sorted(set(sequences))
    assert streamed[-1].state == "SUCCEEDED"
