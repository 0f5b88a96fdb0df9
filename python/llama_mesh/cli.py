"""The `llama-mesh` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from llama_mesh.control_plane_server import ControlPlaneServer
from llama_mesh.loader import WorkflowLoadError, load_workflow
from llama_mesh.nats_server import EmbeddedNats
from llama_mesh.runtime import ServiceConfig, ServiceRuntime
from llama_mesh.topology import Topology

app = typer.Typer(help="llama-mesh: llama-index Workflows as services in a gRPC mesh.")
serve_app = typer.Typer(help="Run one component of a deployment in this process.")
app.add_typer(serve_app, name="serve")


def _ready(**fields: object) -> None:
    """One JSON line on stdout that says the component is serving (for supervisors)."""
    print(json.dumps({"ready": True, **fields}), flush=True)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@serve_app.command("nats")
def serve_nats(
    data_dir: Annotated[Path, typer.Option(help="JetStream storage directory.")] = Path(
        ".llama-mesh/nats"
    ),
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Client port; -1 picks a free one.")] = -1,
    log_level: str = "warning",
) -> None:
    """Run an embedded nats-server with JetStream."""
    _logging(log_level)

    async def main() -> None:
        async with EmbeddedNats.start(data_dir, host=host, port=port) as nats:
            _ready(component="nats", url=nats.url)
            await _until_signalled()

    asyncio.run(main())


@serve_app.command("control-plane")
def serve_control_plane(
    nats: Annotated[list[str], typer.Option(help="NATS URL (repeat for a cluster).")],
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="gRPC port; 0 picks a free one.")] = 50051,
    prefix: Annotated[str, typer.Option(help="Prefix of the mesh's NATS resources.")] = "mesh",
    log_level: str = "warning",
) -> None:
    """Run a control plane (ControlPlane and Queue APIs)."""
    _logging(log_level)

    async def main() -> None:
        async with ControlPlaneServer.start(
            nats, host=host, port=port, topology=Topology(prefix=prefix)
        ) as cp:
            _ready(component="control-plane", address=cp.address)
            await _until_signalled()

    asyncio.run(main())


@serve_app.command("service")
def serve_service(
    workflow: Annotated[str, typer.Argument(help="The Workflow, as module:attribute.")],
    name: Annotated[str, typer.Option(help="Service id clients run.")],
    control_plane: Annotated[str, typer.Option(help="Control plane HOST:PORT.")] = (
        "127.0.0.1:50051"
    ),
    path: Annotated[Path | None, typer.Option(help="Directory to add to sys.path.")] = None,
    max_concurrency: int = 16,
    max_attempts: int = 3,
    ack_wait: Annotated[float, typer.Option(help="Seconds before an unacked task moves.")] = 30.0,
    timeout: Annotated[float | None, typer.Option(help="Default task timeout (s).")] = None,
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Service API port; 0 picks a free one.")] = 0,
    log_level: str = "warning",
) -> None:
    """Run one replica of a workflow service."""
    _logging(log_level)
    try:
        loaded = load_workflow(workflow, path)
    except WorkflowLoadError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    config = ServiceConfig(
        name,
        max_concurrency=max_concurrency,
        max_attempts=max_attempts,
        ack_wait=ack_wait,
        timeout=timeout,
        host=host,
        port=port,
    )

    async def main() -> None:
        async with ServiceRuntime.start(loaded, config, control_plane) as runtime:
            _ready(
                component="service",
                service=name,
                replica_id=runtime.replica_id,
                address=runtime.address,
            )
            signalled = asyncio.create_task(_until_signalled())
            drained = asyncio.create_task(runtime.drained.wait())
            await asyncio.wait({signalled, drained}, return_when=asyncio.FIRST_COMPLETED)
            for task in (signalled, drained):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(main())


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
