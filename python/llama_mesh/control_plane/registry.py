"""The service registry: the service RPCs, and a cache of it kept by a KV watch.

Records live in the `services` bucket; a replica registers with a lease and renews
it, and a replica whose lease expired is dropped whenever a record is read or
written. CreateTask looks a service up for every task while records change only
when replicas come, go or renew, so each control-plane replica keeps them in a
cache fed by a watch of the bucket (rebuilt from the bucket when it starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from google.protobuf import timestamp_pb2
from nats.js.api import ConsumerInfo

from llama_mesh.control_plane.routing import orchestrator_for_unnamed, orchestrators
from llama_mesh.core import proto_time
from llama_mesh.core.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from llama_mesh.core.limits import (
    MAX_ADDRESS_CHARS,
    MAX_DESCRIPTION_BYTES,
    MAX_ID_CHARS,
    MAX_SERVICE_BYTES,
    MAX_TYPE_NAME_CHARS,
    check_bytes,
    check_chars,
    check_text,
)
from llama_mesh.core.names import parse_service_name
from llama_mesh.core.paging import page_size, paginate
from llama_mesh.core.tasks import cancel_and_wait
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.service_consumer import place_service_consumer
from llama_mesh.rpc.identity import caller
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import queue_pb2 as q
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)

DEFAULT_LEASE = 10.0


def live_replicas(service: resources_pb2.Service, at: float | None = None) -> None:
    """Drop replicas whose lease has expired (in place)."""
    cutoff = at if at is not None else time.time()
    live = [r for r in service.replicas if proto_time.epoch_seconds(r.lease_expire_time) > cutoff]
    del service.replicas[:]
    service.replicas.extend(live)


_DEFINITION = (
    "kind",
    "description",
    "input_schema",
    "retry_policy",
    "default_timeout",
    "accepted_event_types",
)


def _redefines(
    current: resources_pb2.Service,
    offered: resources_pb2.Service,
    others: list[resources_pb2.Replica],
) -> bool:
    """Whether registering `offered` would change a service that other replicas run."""
    now = time.time()
    running = any(proto_time.epoch_seconds(r.lease_expire_time) > now for r in others)
    return running and any(
        getattr(current, field) != getattr(offered, field) for field in _DEFINITION
    )


def _check_sizes(request: cp.RegisterServiceRequest) -> None:
    """What a replica registers fits in the registry's record."""
    service, replica = request.service, request.replica
    check_text("service.description", service.description, MAX_DESCRIPTION_BYTES)
    for i, event_type in enumerate(service.accepted_event_types):
        check_chars(f"service.accepted_event_types[{i}]", event_type, MAX_TYPE_NAME_CHARS)
    check_bytes(
        "service",
        service.ByteSize(),
        MAX_SERVICE_BYTES,
        "shorten its description, input schema or tool schemas",
    )
    check_chars("replica.replica_id", replica.replica_id, MAX_ID_CHARS)
    check_chars("replica.address", replica.address, MAX_ADDRESS_CHARS)
    check_chars("replica.runtime", replica.runtime, MAX_ID_CHARS)


MAX_ACK_WAIT = 24 * 3600.0


def asked_ack_wait(request: cp.RegisterServiceRequest | q.SubscribeRequest) -> float | None:
    """The ack wait a replica asks for (None: whatever the consumer has)."""
    if not request.HasField("ack_wait"):
        return None
    ack_wait = proto_time.seconds(request.ack_wait)
    if not 0 < ack_wait <= MAX_ACK_WAIT:
        raise InvalidArgumentError(
            f"ack_wait must be positive and at most {MAX_ACK_WAIT:.0f}s, not {ack_wait}s"
        )
    return ack_wait


class ServiceRegistry:
    """Register, renew, deregister, get and list services; look one up from the cache."""

    def __init__(self, state: MeshState) -> None:
        self.state = state
        self._services: dict[str, resources_pb2.Service] = {}
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Watch the bucket (its current records first, then every change)."""
        watcher = await self.state.services.kv.watch(">")
        self._watch = asyncio.create_task(self._follow(watcher))

    async def stop(self) -> None:
        if self._watch is not None:
            await cancel_and_wait(self._watch)
            self._watch = None

    async def _follow(self, watcher: Any) -> None:
        try:
            async for entry in watcher:
                if entry is None:  # end of the initial values
                    continue
                if entry.operation is not None or not entry.value:  # deleted or purged
                    self._services.pop(entry.key, None)
                else:
                    self._services[entry.key] = resources_pb2.Service.FromString(entry.value)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def lookup(self, service_id: str) -> resources_pb2.Service:
        """The registered service, from the cache if the watch has seen it."""
        cached = self._services.get(service_id)
        if cached is not None:
            return cached
        # Not seen by the watch (yet): a replica may have registered a moment ago.
        found = await self.state.services.find(service_id)
        if found is None:
            raise NotFoundError(
                f"service {service_id!r} is not registered: deploy it first "
                "(ListServices shows what is registered)"
            )
        return found[0]

    async def orchestrator(self) -> str:
        """The orchestrator service that takes a task naming no service (routing.py)."""
        if orchestrators(self._services.values()):
            return orchestrator_for_unnamed(self._services.values())
        # Not seen by the watch (yet): it may have registered a moment ago.
        return orchestrator_for_unnamed(s for _, s in await self.state.services.scan())

    async def register_service(
        self, request: cp.RegisterServiceRequest
    ) -> cp.RegisterServiceResponse:
        if not request.HasField("service"):
            raise InvalidArgumentError("service is required")
        if not request.HasField("replica") or not request.replica.replica_id:
            raise InvalidArgumentError("replica.replica_id is required")
        service_id = parse_service_name(request.service.name, "service.name")
        _check_sizes(request)
        lease = proto_time.seconds(request.lease_duration) or DEFAULT_LEASE
        if lease < 0:
            raise InvalidArgumentError("lease_duration must not be negative")
        ack_wait = asked_ack_wait(request)
        await self.place_consumer(service_id, request.replica.replica_id, ack_wait)
        expire = proto_time.timestamp(time.time() + lease)
        replica = resources_pb2.Replica()
        replica.CopyFrom(request.replica)
        replica.lease_expire_time.CopyFrom(expire)
        if replica.state == resources_pb2.REPLICA_STATE_UNSPECIFIED:
            replica.state = resources_pb2.REPLICA_STATE_SERVING
        stamp = proto_time.now()

        who = caller()

        def change(service: resources_pb2.Service) -> None:
            replicas = [r for r in service.replicas if r.replica_id != replica.replica_id]
            if not who.is_admin and _redefines(service, request.service, replicas):
                raise PermissionDeniedError(
                    f"service {request.service.name!r} is running with another definition "
                    "(description, schema, kind or settings): only an admin may change a "
                    "running service; stop its replicas first, or register as admin"
                )
            create_time = resources_pb2.Service().create_time
            create_time.CopyFrom(service.create_time)
            service.CopyFrom(request.service)
            service.create_time.CopyFrom(create_time)
            del service.replicas[:]
            service.replicas.extend([*replicas, replica])
            live_replicas(service)
            service.task_subject = self.state.topology.task_subject(service_id)
            service.update_time.CopyFrom(stamp)

        fresh = resources_pb2.Service()
        change(fresh)
        fresh.create_time.CopyFrom(stamp)
        if await self.state.services.create(service_id, fresh) is None:
            service = await self.state.services.mutate(service_id, request.service.name, change)
        else:
            service = fresh
        logger.info("service %s: replica %s registered", service.name, replica.replica_id)
        return cp.RegisterServiceResponse(
            service=service,
            lease_expire_time=expire,
            queue_config=self.state.topology.queue_config(self.state.nats_urls),
        )

    async def place_consumer(
        self, service_id: str, replica_id: str, ack_wait: float | None
    ) -> ConsumerInfo:
        """Create or correct the service's task consumer before its replica is
        registered, or subscribes through the Queue API (a replica may not touch it:
        launch/nats_users.py). The ack wait the replica asks for applies when no other
        replica is live, else the consumer's stays (the replicas running keep their
        tasks alive by it). An empty `replica_id` counts every live replica as other."""
        found = await self.state.services.find(service_id)
        if found is not None:
            live_replicas(found[0])
            if any(r.replica_id != replica_id for r in found[0].replicas):
                ack_wait = None
        return await place_service_consumer(
            self.state.js, self.state.topology, service_id, ack_wait=ack_wait
        )

    async def renew_service_lease(
        self, request: cp.RenewServiceLeaseRequest
    ) -> cp.RenewServiceLeaseResponse:
        service_id = parse_service_name(request.name)
        if not request.replica_id:
            raise InvalidArgumentError("replica_id is required")
        lease = proto_time.seconds(request.lease_duration) or DEFAULT_LEASE
        if lease < 0:
            raise InvalidArgumentError("lease_duration must not be negative")
        renewed: list[timestamp_pb2.Timestamp] = []

        def change(service: resources_pb2.Service) -> None:
            at = time.time()
            live_replicas(service, at)
            for replica in service.replicas:
                if replica.replica_id == request.replica_id:
                    replica.lease_expire_time.CopyFrom(proto_time.timestamp(at + lease))
                    replica.running_task_count = request.running_task_count
                    if request.state:
                        replica.state = request.state
                    renewed.append(replica.lease_expire_time)
                    return
            raise NotFoundError(
                f"replica {request.replica_id!r} of {request.name!r} is not registered "
                "(its lease may have expired): register again"
            )

        await self.state.services.mutate(service_id, request.name, change)
        return cp.RenewServiceLeaseResponse(lease_expire_time=renewed[-1])

    async def deregister_service(
        self, request: cp.DeregisterServiceRequest
    ) -> cp.DeregisterServiceResponse:
        service_id = parse_service_name(request.name)
        if not request.replica_id:
            caller().require_admin(f"deregister the whole service {request.name!r}")
            await self.state.services.get(service_id, request.name)
            await self.state.services.delete(service_id)
            logger.info("service %s deregistered", request.name)
            return cp.DeregisterServiceResponse()

        def change(service: resources_pb2.Service) -> None:
            kept = [r for r in service.replicas if r.replica_id != request.replica_id]
            if len(kept) == len(service.replicas):
                raise NotFoundError(
                    f"replica {request.replica_id!r} of {request.name!r} is not registered"
                )
            del service.replicas[:]
            service.replicas.extend(kept)
            service.update_time.CopyFrom(proto_time.now())

        await self.state.services.mutate(service_id, request.name, change)
        logger.info("service %s: replica %s left", request.name, request.replica_id)
        return cp.DeregisterServiceResponse()

    async def get_service(self, request: cp.GetServiceRequest) -> cp.GetServiceResponse:
        service_id = parse_service_name(request.name)
        service = await self.state.services.get(service_id, request.name)
        live_replicas(service)
        return cp.GetServiceResponse(service=service)

    async def list_services(self, request: cp.ListServicesRequest) -> cp.ListServicesResponse:
        size = page_size(request.page_size)
        records = await self.state.services.scan()
        page = paginate(records, size, request.page_token, listing="services")
        for service in page.items:
            live_replicas(service)
        return cp.ListServicesResponse(services=page.items, next_page_token=page.next_page_token)
