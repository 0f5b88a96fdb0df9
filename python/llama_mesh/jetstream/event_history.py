"""A task's events so far, read once from the event stream (messages_so_far.py).

The Agents API folds them into a turn (GetTurn, GetStep, a session's turns), and a
new attempt of a task reads the model answers its earlier attempt recorded.

    events = await events_so_far(state.js, state.topology, task_id)
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js import api as js_api

from llama_mesh.jetstream.messages_so_far import messages_so_far
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
    events: list[resources_pb2.TaskEvent] = []
    async with messages_so_far(
        js,
        subject,
        stream=topology.event_stream,
        deliver_policy=js_api.DeliverPolicy.ALL,
        timeout=timeout,
    ) as messages:
        async for msg in messages:
            event = resources_pb2.Envelope.FromString(msg.data).task_event
            event.sequence = msg.metadata.sequence.stream
            events.append(event)
    return events
