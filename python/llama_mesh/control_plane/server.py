"""The control-plane process: ControlPlane and Queue APIs over one MeshState.

async with ControlPlaneServer.start(["nats://127.0.0.1:4222"]) as cp:
    print(cp.address)   # "127.0.0.1:PORT"
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from llama_mesh.control_plane.queue import QueueAPIServicer
from llama_mesh.control_plane.servicer import ControlPlaneAPIServicer
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.topology import Topology
from llama_mesh.rpc.server import serve
from llama_mesh.v1 import control_plane_pb2, control_plane_pb2_grpc, queue_pb2, queue_pb2_grpc

logger = logging.getLogger(__name__)

CONTROL_PLANE_SERVICE = control_plane_pb2.DESCRIPTOR.services_by_name["ControlPlaneAPI"].full_name
QUEUE_SERVICE = queue_pb2.DESCRIPTOR.services_by_name["QueueAPI"].full_name


@dataclass
class ControlPlaneServer:
    address: str
    state: MeshState

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        nats_urls: list[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        topology: Topology | None = None,
        user_credentials: str | None = None,
    ) -> AsyncIterator[ControlPlaneServer]:
        async with MeshState.connect(
            nats_urls, topology, name="llama-mesh-control-plane", user_credentials=user_credentials
        ) as state:
            control_plane = ControlPlaneAPIServicer(state)
            servicers: list[tuple[Any, Any, str]] = [
                (
                    control_plane_pb2_grpc.add_ControlPlaneAPIServicer_to_server,
                    control_plane,
                    CONTROL_PLANE_SERVICE,
                ),
                (
                    queue_pb2_grpc.add_QueueAPIServicer_to_server,
                    QueueAPIServicer(state),
                    QUEUE_SERVICE,
                ),
            ]
            await control_plane.start()
            try:
                async with serve(
                    servicers, host=host, port=port, on_shutdown=control_plane.shutting_down.set
                ) as (address, _):
                    logger.info("control plane serving at %s (NATS %s)", address, nats_urls)
                    yield cls(address=address, state=state)
            finally:
                await control_plane.stop()
            logger.info("control plane at %s stopped", address)
