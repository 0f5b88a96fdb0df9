"""The control-plane process: ControlPlane, Queue and Auth APIs over one MeshState.

async with ControlPlaneServer.start(["nats://127.0.0.1:4222"]) as cp:
    print(cp.address)   # "127.0.0.1:PORT"
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from llama_mesh.config.retention import RetentionConfig
from llama_mesh.control_plane.ack_ids import AckIdSigner
from llama_mesh.control_plane.agents_api.agent_cache import AgentCache
from llama_mesh.control_plane.agents_api.servicer import AgentsAPIServicer, ResponsesAPIServicer
from llama_mesh.control_plane.auth import AuthAPIServicer
from llama_mesh.control_plane.journal_service import JournalService
from llama_mesh.control_plane.queue import QueueAPIServicer
from llama_mesh.control_plane.servicer import ControlPlaneAPIServicer
from llama_mesh.jetstream.api_keys import ApiKeyStore
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.live_events import LiveEvents
from llama_mesh.jetstream.secrets import shared_key
from llama_mesh.jetstream.topology import Topology
from llama_mesh.rpc.metrics_access import metrics_access
from llama_mesh.rpc.security import NO_AUTH, SecurityConfig, server_security
from llama_mesh.rpc.server import serve
from llama_mesh.telemetry.metrics_endpoint import serve_metrics
from llama_mesh.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    control_plane_pb2,
    control_plane_pb2_grpc,
    queue_pb2,
    queue_pb2_grpc,
    responses_pb2,
    responses_pb2_grpc,
)

logger = logging.getLogger(__name__)

CONTROL_PLANE_SERVICE = control_plane_pb2.DESCRIPTOR.services_by_name["ControlPlaneAPI"].full_name
QUEUE_SERVICE = queue_pb2.DESCRIPTOR.services_by_name["QueueAPI"].full_name
AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthAPI"].full_name
AGENTS_SERVICE = agents_pb2.DESCRIPTOR.services_by_name["AgentsAPI"].full_name
RESPONSES_SERVICE = responses_pb2.DESCRIPTOR.services_by_name["ResponsesAPI"].full_name

# (key id, roles, SHA-256 of its secret): a key a launcher generated, installed at start.
InstalledKey = tuple[str, list[str], str]


@dataclass
class ControlPlaneServer:
    address: str
    state: MeshState
    keys: ApiKeyStore
    # http://HOST:PORT/metrics, when the control plane serves metrics.
    metrics_url: str | None = None

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
        nkeys_seed: str | None = None,
        nats_tls: ssl.SSLContext | None = None,
        security: SecurityConfig = NO_AUTH,
        install_keys: Sequence[InstalledKey] = (),
        metrics_port: int | None = None,
        retention: RetentionConfig | None = None,
    ) -> AsyncIterator[ControlPlaneServer]:
        """Serve until the block ends; `metrics_port` (0: a free one) serves Prometheus
        metrics at /metrics on `host`, to admins only with authentication on (unless
        `security.open_metrics`), over HTTPS with TLS on."""
        async with (
            MeshState.connect(
                nats_urls,
                topology,
                name="llama-mesh-control-plane",
                user_credentials=user_credentials,
                nkeys_seed=nkeys_seed,
                tls=nats_tls,
            ) as state,
            ApiKeyStore.open(state.js, state.topology) as keys,
            # Records what replicas report on their tasks (they write none themselves).
            JournalService.serving(state),
            AgentCache.following(state) as agent_cache,
            # Event streams and streamed turns follow their tasks' events (one hook for
            # all of them).
            LiveEvents.following(state) as live_events,
            server_security(security, keys.lookup) as server_security_,
        ):
            for key_id, roles, digest in install_keys:
                await keys.install(key_id, roles, digest)
            control_plane = ControlPlaneAPIServicer(
                state, live_events, retention or RetentionConfig()
            )
            signer = AckIdSigner(await shared_key(state.js, state.topology, "ack_ids"))
            agents_api = AgentsAPIServicer(control_plane, live_events, agent_cache)
            servicers: list[tuple[Any, Any, str]] = [
                (
                    control_plane_pb2_grpc.add_ControlPlaneAPIServicer_to_server,
                    control_plane,
                    CONTROL_PLANE_SERVICE,
                ),
                (
                    queue_pb2_grpc.add_QueueAPIServicer_to_server,
                    QueueAPIServicer(state, signer, control_plane.registry),
                    QUEUE_SERVICE,
                ),
                (auth_pb2_grpc.add_AuthAPIServicer_to_server, AuthAPIServicer(keys), AUTH_SERVICE),
                (
                    agents_pb2_grpc.add_AgentsAPIServicer_to_server,
                    agents_api,
                    AGENTS_SERVICE,
                ),
                (
                    responses_pb2_grpc.add_ResponsesAPIServicer_to_server,
                    ResponsesAPIServicer(control_plane, agents_api),
                    RESPONSES_SERVICE,
                ),
            ]
            await control_plane.start()
            try:
                async with (
                    serve(
                        servicers,
                        host=host,
                        port=port,
                        on_shutdown=control_plane.shutting_down.set,
                        security=server_security_,
                    ) as (address, _),
                    serve_metrics(
                        host,
                        metrics_port,
                        metrics_access(server_security_, open_metrics=security.open_metrics),
                    ) as metrics_url,
                ):
                    logger.info(
                        "control plane serving at %s (NATS %s, auth %s, TLS %s)",
                        address,
                        nats_urls,
                        "on" if security.auth else "off",
                        "mTLS" if security.tls_client_ca else "on" if security.tls_cert else "off",
                    )
                    yield cls(address=address, state=state, keys=keys, metrics_url=metrics_url)
            finally:
                await control_plane.stop()
            logger.info("control plane at %s stopped", address)
