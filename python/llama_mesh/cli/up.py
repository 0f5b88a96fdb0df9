"""`llama-mesh up FILE` and `llama-mesh check FILE`: the commands of a deployment file.

llama-mesh check examples/quickstart/deployment.yaml   # validate, import workflows
llama-mesh up examples/quickstart/deployment.yaml      # run it until Ctrl-C
cd examples/quickstart && llama-mesh up                # ./llama-mesh.yaml or ./deployment.yaml
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from llama_mesh.cli.target import (
    DEPLOYMENT_FILE_NAMES,
    EXIT_USAGE,
    Output,
    OutputOption,
    error,
    find_deployment_file,
    load_or_exit,
    out,
)
from llama_mesh.config.restarts import RestartConfig

FileArgument = Annotated[
    Path | None,
    typer.Argument(
        help="The deployment file (YAML); default: ./llama-mesh.yaml or ./deployment.yaml.",
        show_default=False,
    ),
]


def _file_or_exit(file: Path | None) -> Path:
    """The file given, else the current directory's."""
    if file is not None:
        return file
    found = find_deployment_file()
    if found is None:
        names = " or ".join(DEPLOYMENT_FILE_NAMES)
        error(f"no deployment file given, and no {names} in {Path.cwd()}")
        raise typer.Exit(EXIT_USAGE)
    return found


def up(
    file: FileArgument = None,
    output: OutputOption = Output.text,
    max_restarts: Annotated[
        int | None,
        typer.Option(help="Restarts of a child allowed within --restart-window (file: restarts)."),
    ] = None,
    restart_window: Annotated[
        float | None,
        typer.Option(help="Seconds over which --max-restarts is counted (file: restarts)."),
    ] = None,
) -> None:
    """Start a whole deployment: NATS, control plane, services, gateway. Ctrl-C stops it."""
    from llama_mesh.launch.deployment import DeploymentError, check_ports_free
    from llama_mesh.launch.up import run_deployment

    file = _file_or_exit(file)
    deployment = load_or_exit(file, import_workflows=True)
    given = {"max_restarts": max_restarts, "window": restart_window}
    overrides = {k: v for k, v in given.items() if v is not None}
    try:
        restarts = RestartConfig.model_validate({**deployment.restarts.model_dump(), **overrides})
    except ValidationError as e:
        error(f"--max-restarts/--restart-window: {e.errors()[0]['msg']}")
        raise typer.Exit(EXIT_USAGE) from None
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
            restarts=restarts,
        )
    )
    raise typer.Exit(code)


def check(
    file: FileArgument = None,
    output: OutputOption = Output.text,
) -> None:
    """Validate a deployment file and import its workflows; start nothing."""
    file = _file_or_exit(file)
    deployment = load_or_exit(file, import_workflows=True)
    if output is Output.json:
        print(json.dumps({"valid": True, "deployment": deployment.model_dump(mode="json")}))
    else:
        services = ", ".join(f"{n} x{s.replicas}" for n, s in deployment.services.items())
        out.print(f"{file}: deployment {deployment.name!r} is valid; services: {services}")
