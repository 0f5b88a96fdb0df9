"""What `up` asks of the control plane and of a replica about a replica process, as the
hooks of its ChildSpec (child_specs.py): pause a replica it replaced before stopping it
(``quiesce``), and take one that died out of the registry (``on_exit``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc

from llama_mesh.client import Credentials
from llama_mesh.core.names import service_name
from llama_mesh.launch.supervisor import Child
from llama_mesh.v1 import (
    control_plane_pb2,
    control_plane_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
)

logger = logging.getLogger(__name__)


def pause_replica(env: dict[str, str]) -> Callable[[Child], Awaitable[None]]:
    """What `up --watch` does to a replica it replaced, before it stops it: pause it
    (PauseService, the operator's: with the admin token), so that it takes no task
    after the restart is announced; those it runs finish as it drains."""

    async def pause(child: Child) -> None:
        address = str(child.ready.get("address", ""))
        if not address:
            return
        credentials = Credentials.from_env(env)
        async with credentials.channel(address) as channel:
            await service_pb2_grpc.ServiceAPIStub(channel).PauseService(
                service_pb2.PauseServiceRequest(), timeout=10, metadata=credentials.metadata()
            )

    return pause


def deregister_replica(
    control_plane: str, service: str, env: dict[str, str]
) -> Callable[[Child], Awaitable[None]]:
    """What `up` does when a replica dies: take it out of the registry at once, with
    the replica's own credentials (it cannot do it itself any more)."""

    async def leave(child: Child) -> None:
        replica_id = str(child.ready.get("replica_id", ""))
        if not replica_id:
            return
        credentials = Credentials.from_env(env)
        async with credentials.channel(control_plane) as channel:
            stub = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
            try:
                await stub.DeregisterService(
                    control_plane_pb2.DeregisterServiceRequest(
                        name=service_name(service), replica_id=replica_id
                    ),
                    timeout=5,
                    metadata=credentials.metadata(),
                )
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:  # gone already: fine
                    raise
        logger.info("%s: replica %s deregistered", child.name, replica_id)

    return leave
