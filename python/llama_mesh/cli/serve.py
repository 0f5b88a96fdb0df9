"""`llama-mesh serve ...`: run one component of a deployment in this process.

Each prints one JSON line `{"ready": true, ...}` on stdout once it serves (with the
address it bound) and stops cleanly on SIGINT/SIGTERM, or when stdin closes if given
`--watch-stdin` (how `up` stops its children).

    llama-mesh serve control-plane --nats nats://127.0.0.1:4222 --port 0
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from llama_mesh.cli.target import (
    DEFAULT_CONTROL_PLANE,
    EXIT_ERROR,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    error,
)
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.errors import MeshError, UnavailableError
from llama_mesh.jetstream.topology import Topology
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.launch.supervisor import until_signalled

WatchStdin = Annotated[
    bool, typer.Option(hidden=True, help="Also stop when stdin closes (used by `up`).")
]


def _ready(**fields: object) -> None:
    """One JSON line on stdout that says the component is serving (for supervisors)."""
    print(json.dumps({"ready": True, **fields}), flush=True)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def serve_nats(
    data_dir: Annotated[Path, typer.Option(help="JetStream storage directory.")] = Path(
        ".llama-mesh/nats"
    ),
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Client port; -1 picks a free one.")] = -1,
    log_level: str = "warning",
    watch_stdin: WatchStdin = False,
) -> None:
    """Run an embedded nats-server with JetStream."""
    _logging(log_level)

    async def main() -> None:
        async with EmbeddedNats.start(data_dir, host=host, port=port) as nats:
            _ready(component="nats", url=nats.url, pid=nats.process.pid)
            await until_signalled(watch_stdin=watch_stdin)

    asyncio.run(main())


def serve_control_plane(
    nats: Annotated[list[str], typer.Option(help="NATS URL (repeat for a cluster).")],
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="gRPC port; 0 picks a free one.")] = 50051,
    prefix: Annotated[str, typer.Option(help="Prefix of the mesh's NATS resources.")] = "mesh",
    replicas: Annotated[
        int, typer.Option(help="JetStream replicas of streams and buckets (3 on a cluster).")
    ] = 1,
    credentials: Annotated[
        Path | None, typer.Option(help="NATS user credentials (.creds) file.")
    ] = None,
    log_level: str = "warning",
    watch_stdin: WatchStdin = False,
) -> None:
    """Run a control plane (ControlPlane and Queue APIs)."""
    _logging(log_level)
    try:
        topology = Topology(prefix=prefix, replicas=replicas)
    except ValueError as e:
        error(f"--prefix: {e}")
        raise typer.Exit(EXIT_USAGE) from None

    async def main() -> None:
        async with ControlPlaneServer.start(
            nats,
            host=host,
            port=port,
            topology=topology,
            user_credentials=str(credentials) if credentials else None,
        ) as cp:
            _ready(component="control-plane", address=cp.address)
            await until_signalled(watch_stdin=watch_stdin)

    try:
        asyncio.run(main())
    except (MeshError, OSError) as e:
        error(f"control plane: {e}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def serve_service(
    workflow: Annotated[str, typer.Argument(help="The Workflow, as module:attribute.")],
    name: Annotated[str, typer.Option(help="Service id clients run.")],
    control_plane: Annotated[str, typer.Option(help="Control plane HOST:PORT.")] = (
        DEFAULT_CONTROL_PLANE
    ),
    path: Annotated[Path | None, typer.Option(help="Directory to add to sys.path.")] = None,
    description: Annotated[str | None, typer.Option(help="Shown by `status`.")] = None,
    max_concurrency: int = 16,
    max_attempts: int = 3,
    initial_backoff: Annotated[float, typer.Option(help="Seconds before a retry.")] = 1.0,
    max_backoff: Annotated[float, typer.Option(help="Longest delay between retries.")] = 30.0,
    retryable_error_type: Annotated[
        list[str] | None, typer.Option(help="Exception type name to retry (repeat).")
    ] = None,
    ack_wait: Annotated[float, typer.Option(help="Seconds before an unacked task moves.")] = 30.0,
    timeout: Annotated[float | None, typer.Option(help="Default task timeout (s).")] = None,
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Service API port; 0 picks a free one.")] = 0,
    credentials: Annotated[
        Path | None, typer.Option(help="NATS user credentials (.creds) file.")
    ] = None,
    log_level: str = "warning",
    watch_stdin: WatchStdin = False,
) -> None:
    """Run one replica of a workflow service."""
    _logging(log_level)
    # Imported here: they pull in llama-index workflows, which the other commands
    # (and the control plane's process) do not need.
    from llama_mesh.config import RetryConfig, ServiceConfig
    from llama_mesh.worker.loader import WorkflowLoadError, load_workflow
    from llama_mesh.worker.runtime import ServiceRuntime

    try:
        loaded = load_workflow(workflow, path)
    except WorkflowLoadError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        config = ServiceConfig(
            name,
            description=description,
            max_concurrency=max_concurrency,
            retry=RetryConfig(
                max_attempts=max_attempts,
                initial_backoff=initial_backoff,
                max_backoff=max_backoff,
                retryable_error_types=list(retryable_error_type or []),
            ),
            ack_wait=ack_wait,
            timeout=timeout,
            host=host,
            port=port,
        )
    except (MeshError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None

    async def main() -> None:
        async with ServiceRuntime.start(
            loaded,
            config,
            control_plane,
            user_credentials=str(credentials) if credentials else None,
        ) as runtime:
            _ready(
                component="service",
                service=name,
                replica_id=runtime.replica_id,
                address=runtime.address,
            )
            await until_signalled(watch_stdin=watch_stdin, also=runtime.drained.wait())

    try:
        asyncio.run(main())
    except UnavailableError as e:
        typer.echo(f"error: service {name}: {e}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None


def serve_gateway(
    upstream: Annotated[str, typer.Option(help="Control plane HOST:PORT (gRPC).")],
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port; 0 picks a free one.")] = 8080,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Allowed CORS origin, '*' for any (repeat).")
    ] = None,
    log_level: str = "warning",
    watch_stdin: WatchStdin = False,
) -> None:
    """Run the REST/JSON gateway (with /openapi.json and /healthz) for a control plane."""
    _logging(log_level)
    from llama_mesh_gateway import serve as serve_http

    async def main() -> None:
        def ready(server: Any) -> None:
            _ready(component="gateway", url=server.url, openapi=f"{server.url}/openapi.json")

        gateway = serve_http(upstream, host, port, cors_origins=cors_origin or [], on_ready=ready)
        await until_signalled(watch_stdin=watch_stdin, also=gateway)

    try:
        asyncio.run(main())
    except OSError as e:
        error(f"gateway cannot listen on {host}:{port}: {e.strerror}")
        raise typer.Exit(EXIT_ERROR) from None
