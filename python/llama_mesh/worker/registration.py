"""A replica's place in the control plane's registry: register, keep the lease, leave.

Registering also has the control plane create (or correct) the service's task
consumer, with the ack wait the replica asks for: a replica may only bind to it.

The lease is the replica's heartbeat: renewed every third of its length (room for
two misses); a renewal that finds the replica gone (NOT_FOUND, e.g. after the lease
lapsed) registers it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import grpc

from llama_mesh.core import proto_time
from llama_mesh.core.errors import error_for_code
from llama_mesh.core.names import service_name
from llama_mesh.v1 import control_plane_pb2, control_plane_pb2_grpc, resources_pb2

logger = logging.getLogger(__name__)


class Registration:
    """Registers the service `service_id` as `service()` with its replica `replica()`
    (both read at each call, so the registry sees the replica's current state)."""

    def __init__(
        self,
        stub: control_plane_pb2_grpc.ControlPlaneAPIAsyncStub,
        control_plane: str,
        service_id: str,
        service: Callable[[], resources_pb2.Service],
        replica: Callable[[], resources_pb2.Replica],
        lease: float,
        metadata: list[tuple[str, str]],
        ack_wait: float | None = None,
    ) -> None:
        self._stub = stub
        self._control_plane = control_plane
        self._id = service_id
        self._name = service_name(service_id)
        self._service = service
        self._replica = replica
        self._lease = lease
        self._metadata = metadata  # the replica's credentials
        self._ack_wait = ack_wait  # for the service's consumer, which the control plane makes

    async def register(self) -> resources_pb2.QueueConfig:
        """Join the registry; where the mesh's queue is."""
        try:
            response = await self._stub.RegisterService(
                control_plane_pb2.RegisterServiceRequest(
                    service=self._service(),
                    replica=self._replica(),
                    lease_duration=proto_time.duration(self._lease),
                    ack_wait=(
                        None if self._ack_wait is None else proto_time.duration(self._ack_wait)
                    ),
                ),
                timeout=10,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as err:
            raise error_for_code(
                err.code(),
                f"cannot register with the control plane at {self._control_plane}: {err.details()}",
            ) from err
        queue: resources_pb2.QueueConfig = response.queue_config
        return queue

    async def keep_lease(self) -> None:
        """Renew the lease until cancelled."""
        while True:
            # The lease is the heartbeat; a third of it leaves room for two misses.
            await asyncio.sleep(self._lease / 3)
            replica = self._replica()
            try:
                await self._stub.RenewServiceLease(
                    control_plane_pb2.RenewServiceLeaseRequest(
                        name=self._name,
                        replica_id=replica.replica_id,
                        state=replica.state,
                        running_task_count=replica.running_task_count,
                        lease_duration=proto_time.duration(self._lease),
                    ),
                    timeout=5,
                    metadata=self._metadata,
                )
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    logger.warning("service %s: lease lost; registering again", self._id)
                    with contextlib.suppress(Exception):
                        await self.register()
                else:
                    logger.warning("service %s: lease renewal failed: %s", self._id, err.details())

    async def leave(self) -> None:
        """Leave the registry (a control plane that is gone already is no error)."""
        replica_id = self._replica().replica_id
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self._stub.DeregisterService(
                control_plane_pb2.DeregisterServiceRequest(name=self._name, replica_id=replica_id),
                timeout=5,
                metadata=self._metadata,
            )
        logger.info("service %s: replica %s left", self._id, replica_id)
