"""A grpc.aio server with what every llama-mesh server has: authentication and the
policy table (when asked), the error interceptor, RPC metrics, traces (when a tracer
provider is in use), standard health checking, server reflection, and TLS (when asked)."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from llama_mesh.rpc.auth_interceptor import Authenticator, AuthInterceptor
from llama_mesh.rpc.error_interceptor import ErrorInterceptor
from llama_mesh.rpc.metrics_interceptor import MetricsInterceptor
from llama_mesh.rpc.request_checks import RequestCheckInterceptor
from llama_mesh.rpc.tls import ServerTls
from llama_mesh.telemetry import tracing

MAX_MESSAGE_BYTES = 16 << 20
# Our clients ping a connection every 30 s (keepalive) to notice a dead peer during a long
# wait. gRPC servers take a ping on a quiet connection as abuse when it comes sooner than
# 5 min after the last one, and after three such pings end the connection with GOAWAY
# "too_many_pings": a `llama-mesh run` waiting for a person died so after ~2.5 min.
MIN_PING_INTERVAL_MS = 10_000
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
]


class InsecureBindError(OSError):
    """A server was asked to listen beyond loopback without TLS and authentication."""


@dataclass(frozen=True)
class ServerSecurity:
    """How a server checks its callers.

    `authenticator` None: no authentication (every caller is admin), allowed on
    loopback only. `tls` None: plaintext. Health and reflection answer without
    credentials unless `open_health` / `open_reflection` is False.
    """

    authenticator: Authenticator | None = None
    tls: ServerTls | None = None
    open_health: bool = True
    open_reflection: bool = True
    allow_insecure_bind: bool = False


NO_SECURITY = ServerSecurity()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, security: ServerSecurity) -> None:
    """Refuse to serve beyond loopback without TLS and authentication."""
    if is_loopback(host) or security.allow_insecure_bind:
        return
    missing = [
        what
        for what, absent in (
            ("TLS", security.tls is None),
            ("authentication", security.authenticator is None),
        )
        if absent
    ]
    if missing:
        raise InsecureBindError(
            f"refusing to listen on {host} without {' and '.join(missing)}: anyone who can "
            "reach it could call every RPC. Give a certificate and key (--tls-cert/--tls-key, "
            "or `tls:` in the deployment file) and keep authentication on, or listen on "
            "127.0.0.1 (docs/security.md)"
        )


@contextlib.asynccontextmanager
async def serve(
    servicers: Sequence[tuple[Callable[[Any, grpc.aio.Server], None], Any, str]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    grace: float = 5.0,
    on_shutdown: Callable[[], None] | None = None,
    security: ServerSecurity = NO_SECURITY,
) -> AsyncIterator[tuple[str, health.aio.HealthServicer]]:
    """Serve `(add_to_server, servicer, full_service_name)` triples; yields (address, health).

    Health is SERVING for each service and "" while the block runs, NOT_SERVING as it
    shuts down, so load balancers stop sending before the server stops. `on_shutdown`
    runs first, so long calls (waits, streams) can end with UNAVAILABLE, which
    clients retry elsewhere, instead of being cut off.
    """
    check_bind(host, security)
    # Outermost: the caller's trace continues in a span around all the rest; the
    # metrics count the code the caller gets, a refusal included.
    interceptors: list[grpc.aio.ServerInterceptor] = [
        *tracing.server_interceptors(),
        MetricsInterceptor(),
    ]
    if security.authenticator is not None:
        interceptors.append(
            AuthInterceptor(
                security.authenticator,
                open_health=security.open_health,
                open_reflection=security.open_reflection,
            )
        )
    # Innermost: what it refuses, the ErrorInterceptor maps to a status.
    interceptors += [ErrorInterceptor(), RequestCheckInterceptor()]
    server = grpc.aio.server(interceptors=interceptors, options=OPTIONS)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
    for add, servicer, name in servicers:
        add(servicer, server)
        names.append(name)
    reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
    listen = f"{host}:{port}"
    if security.tls is not None:
        bound = server.add_secure_port(listen, security.tls.credentials())
    else:
        bound = server.add_insecure_port(listen)
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    for _, _, name in servicers:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        yield f"{host}:{bound}", health_servicer
    finally:
        if on_shutdown is not None:
            on_shutdown()
        await health_servicer.enter_graceful_shutdown()
        await server.stop(grace)
