"""The durable consumer that all replicas of a service share: who makes it, who binds.

A control plane creates it (or corrects it) as a replica registers; a replica only
binds to it, pulls from it and acks (its NATS user may not create or change a consumer
of the task stream: JetStream cannot restrict a consumer's config, so a replica that
could create its own could filter it on another service's tasks and read them).

    info = await place_service_consumer(js, topology, "echo", ack_wait=30.0)  # control plane
    ack_wait = await bind_service_consumer(js, topology, "echo", 30.0)        # replica
"""

from __future__ import annotations

import functools
import logging

from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError

from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.jetstream.api_errors import CONSUMER_EXISTS, JS_CONSUMER_WQ_NOT_UNIQUE
from llama_mesh.jetstream.topology import Topology, while_forming

logger = logging.getLogger(__name__)

DEFAULT_ACK_WAIT = 30.0
"""Seconds a taken task may go without a sign of life, unless its service says."""


def service_consumer_config(
    topology: Topology,
    service_id: str,
    *,
    ack_wait: float = DEFAULT_ACK_WAIT,
    max_ack_pending: int = 10_000,
) -> api.ConsumerConfig:
    """The durable consumer that all replicas of a service share.

    ``max_deliver`` is unlimited here: the runtime counts attempts against each task's
    own retry policy and dead-letters the task itself.
    """
    return api.ConsumerConfig(
        durable_name=topology.service_consumer(service_id),
        filter_subject=topology.task_subject(service_id),
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=-1,
        max_ack_pending=max_ack_pending,
        max_waiting=4096,
    )


async def place_service_consumer(
    js: JetStreamContext, topology: Topology, service_id: str, *, ack_wait: float | None
) -> api.ConsumerInfo:
    """Create the service's durable consumer, or correct it to what it must be (a
    control plane does, as a replica registers; replicas only bind to it).

    `ack_wait` None keeps the ack wait of the consumer that exists (30 s for a new
    one). Whatever else differs is put back: its filter subject above all (who set
    another would read another service's tasks). A config JetStream cannot update in
    place (a push consumer, another ack policy) is replaced: the task stream is a work
    queue, so the new consumer delivers every task not yet acked, and none is lost.
    """
    stream, durable = topology.task_stream, topology.service_consumer(service_id)
    current: api.ConsumerInfo | None
    try:
        current = await while_forming(functools.partial(js.consumer_info, stream, durable))
    except NotFoundError:
        current = None
    if ack_wait is None:
        ack_wait = current.config.ack_wait if current is not None else None
    config = service_consumer_config(topology, service_id, ack_wait=ack_wait or DEFAULT_ACK_WAIT)
    if current is not None and current.config.filter_subject != config.filter_subject:
        logger.warning(
            "consumer %s was filtered on %s, not %s: correcting it",
            durable,
            current.config.filter_subject,
            config.filter_subject,
        )
    try:
        # JetStream creates it, or updates it in place (filter, ack wait, limits).
        return await while_forming(functools.partial(js.add_consumer, stream, config))
    except APIError as err:  # e.g. "max waiting can not be updated" is a 500
        if err.err_code == JS_CONSUMER_WQ_NOT_UNIQUE:
            # Another consumer takes this service's tasks: a service's consumer
            # pointed elsewhere (by a replica, before they lost the right) is put back.
            if not await _correct_others(js, topology, durable):
                raise FailedPreconditionError(
                    f"another consumer of stream {stream} takes tasks on "
                    f"{config.filter_subject}, so {durable} cannot: find it with "
                    f"`nats consumer ls {stream}` and delete it"
                ) from err
            return await while_forming(functools.partial(js.add_consumer, stream, config))
        if current is None or err.err_code in CONSUMER_EXISTS:
            raise
        logger.warning("consumer %s cannot be updated (%s): making it again", durable, err)
    await js.delete_consumer(stream, durable)
    return await while_forming(functools.partial(js.add_consumer, stream, config))


async def _correct_others(js: JetStreamContext, topology: Topology, durable: str) -> bool:
    """Correct the other services' consumers that are not filtered on their own
    service's tasks; whether there was one."""
    prefix = topology.service_consumer("")
    wrong = [
        info.name.removeprefix(prefix)
        for info in await js.consumers_info(topology.task_stream)
        if info.name != durable
        and info.name.startswith(prefix)
        and info.config.filter_subject != topology.task_subject(info.name.removeprefix(prefix))
    ]
    for service_id in wrong:
        await place_service_consumer(js, topology, service_id, ack_wait=None)
    return bool(wrong)


async def bind_service_consumer(
    js: JetStreamContext, topology: Topology, service_id: str, ack_wait: float
) -> float:
    """Bind a replica to the consumer a control plane made for its service as it
    registered (a replica may not make or change it: launch/nats_users.py); the ack
    wait to go by: the consumer's, which replicas running already may have set to
    another than the `ack_wait` this one asked for."""
    durable = topology.service_consumer(service_id)
    try:
        info = await while_forming(
            functools.partial(js.consumer_info, topology.task_stream, durable)
        )
    except NotFoundError as err:
        raise FailedPreconditionError(
            f"the task stream has no consumer {durable!r} for service {service_id!r}: a "
            "control plane creates it when a replica registers, and this one did not "
            "(a control plane older than the replica): upgrade the control planes first"
        ) from err
    bound = info.config.ack_wait or ack_wait
    if bound != ack_wait:
        logger.warning(
            "service %s: its consumer's ack wait is %.1fs, set by replicas running "
            "already; this replica asked for %.1fs and goes by the consumer's",
            service_id,
            bound,
            ack_wait,
        )
    return bound
