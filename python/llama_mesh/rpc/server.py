"""A grpc.aio server with what every llama-mesh server has: the error interceptor,
standard health checking and server reflection."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from llama_mesh.rpc.error_interceptor import ErrorInterceptor

# grpc ships no type information: a servicer's context is typed as Any.
ServicerContext: TypeAlias = Any

MAX_MESSAGE_BYTES = 16 << 20
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


@contextlib.asynccontextmanager
async def serve(
    servicers: Sequence[tuple[Callable[[Any, grpc.aio.Server], None], Any, str]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    grace: float = 5.0,
    on_shutdown: Callable[[], None] | None = None,
) -> AsyncIterator[tuple[str, health.HealthServicer]]:
    """Serve `(add_to_server, servicer, full_service_name)` triples; yields (address, health).

    Health is SERVING for each service and "" while the block runs, NOT_SERVING as it
    shuts down, so load balancers stop sending before the server stops. `on_shutdown`
    runs first, so long calls (waits, streams) can end with UNAVAILABLE, which
    clients retry elsewhere, instead of being cut off.
    """
    server = grpc.aio.server(interceptors=[ErrorInterceptor()], options=OPTIONS)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
    for add, servicer, name in servicers:
        add(servicer, server)
        names.append(name)
    reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"{host}:{port}")
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
