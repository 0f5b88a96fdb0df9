"""A task's events so far, read once from the event stream.

The Agents API folds them into a turn (GetTurn, GetStep, a session's turns), and a
new attempt of a task reads the model answers its earlier attempt recorded. As for KV
listings (kv_listing.py), the end is the server's own count: nothing delivered and
nothing pending means no events; otherwise read until a message says nothing more is
pending. (An ordered consumer pushes as soon as it exists, so consumer info alone may
say 0 pending while the events wait in the subscription.)

    events = await events_so_far(state.js, state.topology, task_id)
"""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext
from nats.js import api as js_api

from llama_mesh.jetstream.topology import Topology
from llama_mesh.v1 import resources_pb2


async def events_so_far(
    js: JetStreamContext,
    topology: Topology,
    task_id: str,
    *,
    include_final: bool = True,
    timeout: float = 30.0,
) -> list[resources_pb2.TaskEvent]:
    """The task's events published so far, in order, each with its stream sequence
    (without its last, final event unless `include_final`)."""
    subject = topology.task_events(task_id) if include_final else topology.event_subject(task_id)
    sub = await js.subscribe(
        subject,
        ordered_consumer=True,
        deliver_policy=js_api.DeliverPolicy.ALL,
        stream=topology.event_stream,
    )
    events: list[resources_pb2.TaskEvent] = []
    try:
        info = await sub.consumer_info()
        if info.num_pending == 0 and not (info.delivered and info.delivered.consumer_seq):
            return events
        async with asyncio.timeout(timeout):
            async for msg in sub.messages:
                event = resources_pb2.Envelope.FromString(msg.data).task_event
                event.sequence = msg.metadata.sequence.stream
                events.append(event)
                if msg.metadata.num_pending == 0:
                    break
    finally:
        await sub.unsubscribe()
    return events
