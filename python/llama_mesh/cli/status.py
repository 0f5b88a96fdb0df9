"""`llama-mesh status`: the control plane's health, the services with their replicas
and load, and the most recent tasks.

    llama-mesh status -o json
"""

from __future__ import annotations

from typing import Annotated, Any

import grpc
import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich import box
from rich.table import Table

from llama_mesh.cli.target import (
    ConnectTimeout,
    ControlPlaneOption,
    FileOption,
    Output,
    OutputOption,
    Target,
    out,
    print_table,
)
from llama_mesh.cli.views import SHORT_ID, service_view, task_view, tasks_table
from llama_mesh.client import AsyncClient


def status(
    limit: Annotated[int, typer.Option(help="How many recent tasks to show.")] = 10,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Services with their replicas, health and load; the most recent tasks."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        services = [service_view(s) for s in await client.list_services()]
        # One page of `limit` tasks: not every task of the mesh to show a few.
        tasks = [task_view(t) for t in await client.list_tasks("-", limit=limit)]
        health = await _health(target.address)
        data = {
            "control_plane": {"address": target.address, "health": health},
            "services": services,
            "recent_tasks": tasks,
        }
        target.emit(data, lambda: _print_status(data, wide=target.wide))

    target.run(main)


async def _health(address: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            # types-grpcio-health-checking declares HealthStub without its methods.
            response = await health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as e:
            return str(e.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _print_status(data: dict[str, Any], *, wide: bool) -> None:
    cp = data["control_plane"]
    out.print(f"control plane {cp['address']}: [bold]{cp['health']}[/]")
    services = Table(title="services", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("service", "replica", "state", "load", "address"):
        services.add_column(column)
    for s in data["services"]:
        if not s["replicas"]:
            services.add_row(s["name"], "-", "NO REPLICAS", "", "")
        for r in s["replicas"]:
            load = f"{r['running_tasks']}/{r['max_concurrency']}"
            replica = r["replica_id"] if wide else r["replica_id"][:SHORT_ID]
            services.add_row(s["name"], replica, r["state"], load, r["address"])
    print_table(services, wide=wide)
    print_table(tasks_table(data["recent_tasks"], "recent tasks", wide=wide), wide=wide)
