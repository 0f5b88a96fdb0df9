"""What a delivery of a task becomes on this replica: an attempt to run, or settled at once.

The task's record is read as it is delivered (a store that does not answer is waited
out with the delivery) and ``attempt_policy.begin_attempt`` decides: run an attempt,
or settle the message now (task gone, finished, cancelled, out of attempts or time).
A task of another service is never run: only the control plane publishes tasks, each
on its own service's subject, so one here was forged or misrouted.

    begun = await begin_delivered(state, "echo", replica_id, msg, name)
"""

from __future__ import annotations

import logging
import time

from nats.aio.msg import Msg

from llama_mesh.core.attempt_policy import Decision, Run, begin_attempt
from llama_mesh.core.failpoints import failpoint
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.delivery import MessageDelivery, settle
from llama_mesh.jetstream.journal import task_key, ttl_of
from llama_mesh.jetstream.outages import through_outages
from llama_mesh.telemetry import metrics
from llama_mesh.worker.running_record import Recorded

logger = logging.getLogger(__name__)


async def begin_delivered(
    state: MeshState, service: str, replica_id: str, msg: Msg, name: TaskName
) -> tuple[Recorded, Run] | None:
    """The task's record and the attempt to run for this delivery of task `name` of
    `service`, or None when the message was settled at once."""
    delivered = msg.metadata
    metrics.CONSUMER_PENDING.labels(service).set(delivered.num_pending)
    if delivered.num_delivered > 1:
        metrics.REDELIVERIES.labels(service).inc()
    # A store that does not answer is waited out with this delivery (without it the
    # handler would fail and the task wait for the ack wait to be delivered again).
    found = await through_outages(
        lambda: _read_task(state, name), f"reading task {name} as it is delivered"
    )
    if found is None:
        logger.info("task %s: gone (session deleted); dropped", name)
        await msg.ack_sync()
        return None
    if found[0].service != service:
        logger.error("task %s: of service %s, not %s; refused", name, found[0].service, service)
        await msg.term()
        return None
    start = begin_attempt(found[0], time.time())
    if isinstance(start, Decision):
        task = found[0]
        await through_outages(
            lambda: settle(
                state,
                name,
                start,
                MessageDelivery(msg),
                replica_id=replica_id,
                ttl=ttl_of(task),
            ),
            f"settling a delivery of {name}",
        )
        return None
    return found, start


async def _read_task(state: MeshState, name: TaskName) -> Recorded | None:
    failpoint("attempt.read_task")
    return await state.tasks.find(task_key(name))
