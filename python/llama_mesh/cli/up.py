"""`llama-mesh up FILE` and `llama-mesh check FILE`: the commands of a deployment file.

llama-mesh check examples/quickstart/deployment.yaml   # validate, import workflows
llama-mesh up examples/quickstart/deployment.yaml      # run it until Ctrl-C
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from llama_mesh.cli.target import EXIT_USAGE, Output, OutputOption, error, load_or_exit, out


def up(
    file: Annotated[Path, typer.Argument(help="The deployment file (YAML).")],
    output: OutputOption = Output.text,
    max_restarts: Annotated[int, typer.Option(help="Restarts of a child that dies.")] = 3,
) -> None:
    """Start a whole deployment: NATS, control plane, services, gateway. Ctrl-C stops it."""
    from llama_mesh.launch.deployment import DeploymentError, check_ports_free
    from llama_mesh.launch.up import run_deployment

    deployment = load_or_exit(file, import_workflows=True)
    busy = check_ports_free(deployment)
    if busy:
        error(
            f"{DeploymentError(file, busy)}\n"
            "Stop what uses them, or choose other ports (0 picks a free one)."
        )
        raise typer.Exit(EXIT_USAGE)
    code = asyncio.run(
        run_deployment(
            deployment,
            file,
            out,
            json_output=output is Output.json,
            max_restarts=max_restarts,
        )
    )
    raise typer.Exit(code)


def check(
    file: Annotated[Path, typer.Argument(help="The deployment file (YAML).")],
    output: OutputOption = Output.text,
) -> None:
    """Validate a deployment file and import its workflows; start nothing."""
    deployment = load_or_exit(file, import_workflows=True)
    if output is Output.json:
        print(json.dumps({"valid": True, "deployment": deployment.model_dump(mode="json")}))
    else:
        services = ", ".join(f"{n} x{s.replicas}" for n, s in deployment.services.items())
        out.print(f"{file}: deployment {deployment.name!r} is valid; services: {services}")
