"""Carrying out a lifecycle decision for a delivered task: record, dead-letter, settle.

core/attempt_policy.py decides what an attempt's outcome means; ``settle`` does it, in
the one order that loses nothing: the event goes into the task's record (and its
event stream) first, then a dead letter if the task failed for good, and only then
is the message acked or nakked. The Python worker settles the messages it pulled
itself (``MessageDelivery``); the control plane settles those a Queue API service
took, by their ack ids (control_plane/queue.py).
"""

from __future__ import annotations

import logging
from typing import Protocol

from nats.aio.msg import Msg

from llama_mesh.core.attempt_policy import (
    Decision,
    Settle,
)
from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.core.lifecycle import (
    is_final,
    state_name,
)
from llama_mesh.core.names import TaskName
from llama_mesh.core.status import error_type
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import final_event_id, task_key
from llama_mesh.telemetry import metrics, tracing
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)


class Delivery(Protocol):
    """One delivery of a task's message from the service's consumer."""

    @property
    def delivery_count(self) -> int:
        """1 on the first delivery of the message."""
        ...

    async def ack(self) -> None:
        """Done with the message, confirmed by the server (a lost ack would redeliver)."""
        ...

    async def nak(self, delay: float) -> None:
        """Deliver the message again after `delay` seconds (0: at once)."""
        ...


class MessageDelivery:
    """A message this process pulled from JetStream itself."""

    def __init__(self, msg: Msg) -> None:
        self.msg = msg

    @property
    def delivery_count(self) -> int:
        return int(self.msg.metadata.num_delivered)

    async def ack(self) -> None:
        await self.msg.ack_sync()

    async def nak(self, delay: float) -> None:
        await self.msg.nak(delay=delay or None)


async def settle(
    state: MeshState,
    name: TaskName,
    decision: Decision,
    delivery: Delivery,
    *,
    replica_id: str = "",
    known: tuple[resources_pb2.Task, int] | None = None,
    ttl: float | None = None,
) -> resources_pb2.Task | None:
    """Carry out `decision` for task `name`; the task after its event, or None if
    nothing was recorded (no event, or the task had finished elsewhere first: then
    the message is acked whatever the decision said).

    `known` is the record and revision the caller read last, to save a read; `ttl`
    how long the task's events are kept (a republished final event's).
    """
    event = decision.event
    if event is not None and tracing.enabled():
        # On the attempt's span: how it ended (a retry, a failure say why).
        failed = event.HasField("error") and event.error.code != 0
        tracing.annotate(
            error=event.error.message if failed else "",
            **{
                "llama_mesh.state": state_name(event.state),
                "llama_mesh.settle": decision.settle.name,
            },
        )
    task: resources_pb2.Task | None = None
    if event is not None and decision.republish:
        await state.journal.publish(name, event, event_id=final_event_id(name), ttl=ttl)
    elif event is not None:
        try:
            task, _ = await state.journal.record_from(
                name,
                event,
                replica_id=replica_id,
                event_id=final_event_id(name) if is_final(event.state) else "",
                known=known,
            )
        except FailedPreconditionError:
            found = await state.tasks.find(task_key(name))
            if found is not None and not is_final(found[0].state):
                raise
            # Someone else finished it (a cancel while it ran, another attempt).
            await delivery.ack()
            return None
        if decision.settle is Settle.NAK:
            metrics.RETRIES.labels(task.service).inc()
            logger.info(
                "task %s: attempt %d failed (%s); retry in %.1fs",
                name,
                event.attempt,
                error_type(event.error),
                decision.delay,
            )
        if decision.dead_letter:
            await _dead_letter(state, name, task, delivery.delivery_count)
    if decision.settle is Settle.ACK:
        await delivery.ack()
    else:
        await delivery.nak(decision.delay)
    return task


async def _dead_letter(
    state: MeshState, name: TaskName, task: resources_pb2.Task, delivery_count: int
) -> None:
    letter = resources_pb2.Envelope(
        id=f"{name.task_id}.dead",
        dead_letter=resources_pb2.DeadLetter(task=task, delivery_count=delivery_count),
    )
    await state.js.publish(
        state.topology.dead_letter_subject(task.service),
        letter.SerializeToString(),
        headers={"Nats-Msg-Id": letter.id},
    )
    metrics.DEAD_LETTERS.labels(task.service).inc()
    logger.info("task %s: dead-lettered after %d deliveries", name, delivery_count)
