"""`llama-mesh up FILE` and `llama-mesh check FILE`: the commands of a deployment file.

llama-mesh check examples/quickstart/deployment.yaml   # validate, import workflows
llama-mesh up examples/quickstart/deployment.yaml      # run it until Ctrl-C
cd examples/quickstart && llama-mesh up                # ./llama-mesh.yaml or ./deployment.yaml
llama-mesh up --watch                                  # restart what changes as you edit
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from llama_mesh.cli.logs import Level
from llama_mesh.cli.target import (
    DEPLOYMENT_FILE_NAMES,
    EXIT_USAGE,
    Output,
    OutputOption,
    err,
    error,
    find_deployment_file,
    load_or_exit,
    out,
)
from llama_mesh.config.restarts import RestartConfig

if TYPE_CHECKING:
    from llama_mesh.launch.deployment import Deployment

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
    fresh: Annotated[
        bool, typer.Option(help="Start from no sessions, tasks or events (`reset` first).")
    ] = False,
    log_level: Annotated[
        Level | None,
        typer.Option(
            help="Every component's log level (file: logging.level; a component's own "
            "level in logging.components still wins)."
        ),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            help="Restart a service's replicas when its source changes (its Python files, "
            "its section of the deployment file); they drain first."
        ),
    ] = False,
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
    if log_level is not None:
        levels = deployment.logging.model_copy(update={"level": log_level.value})
        deployment = deployment.model_copy(update={"logging": levels})
    if fresh:
        _reset_or_exit(deployment, file, say=err)  # stdout is up's (-o json: JSON only)
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
            watch=watch,
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
        orchestrator = deployment.orchestrator
        routes = ""
        if orchestrator.kind == "pipeline":
            steps = " -> ".join(s.service for s in orchestrator.pipeline_steps)
            routes = f"; orchestrator: pipeline {steps}"
        elif orchestrator.deployed:
            routes = f"; orchestrator: {orchestrator.kind} {orchestrator.source}"
        out.print(f"{file}: deployment {deployment.name!r} is valid; services: {services}{routes}")


def reset(file: FileArgument = None) -> None:
    """Delete a deployment's sessions, tasks and events (its embedded NATS data). The
    keys of its security: section stay; keys made with `keys create` go. Not while it
    runs."""
    file = _file_or_exit(file)
    _reset_or_exit(load_or_exit(file), file, say=out)


def _reset_or_exit(deployment: Deployment, file: Path, say: Console) -> None:
    from llama_mesh.launch.up import read_run_file

    url = deployment.nats.url
    if url:
        servers = url if isinstance(url, str) else ", ".join(url)
        error(f"{file} uses the NATS servers {servers}: its state is there, not on this machine")
        raise typer.Exit(EXIT_USAGE)
    running = read_run_file(deployment)
    if running is not None:
        error(
            f"deployment {deployment.name!r} is running (`llama-mesh up`, pid "
            f"{running['pid']}): stop it first"
        )
        raise typer.Exit(EXIT_USAGE)
    data = deployment.nats_data_dir
    if data.exists():
        shutil.rmtree(data)
        say.print(
            f"deployment {deployment.name!r}: removed its sessions, tasks and events ({data})"
        )
    else:
        say.print(f"deployment {deployment.name!r}: nothing to remove ({data} does not exist)")
