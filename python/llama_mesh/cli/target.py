"""What every client command shares: where the control plane is, how results and
errors are printed, and the exit codes.

Client commands find the control plane from `--control-plane` (or
LLAMA_MESH_CONTROL_PLANE), else from `--file` (or LLAMA_MESH_DEPLOYMENT), else from
`llama-mesh.yaml` or `deployment.yaml` in the current directory: the address a running
`up` of that file recorded, or the file's control_plane host and port; else
127.0.0.1:50051. A control plane that refuses the connection fails the command at once
(`--connect-timeout S` waits for one that is starting).

Exit codes (docs/cli.md): 0 success; 1 the task failed or was cancelled; 2 bad usage,
bad input or an invalid deployment file; 3 not found; 4 the control plane cannot be
reached; 5 any other error.

    target = Target(control_plane, file, output, connect_timeout)
    target.run(main)        # main(client) -> None; mesh errors become messages + exit codes
"""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llama_mesh.cli.views import task_state
from llama_mesh.client import AsyncClient, Credentials
from llama_mesh.client._credentials import read_token_file
from llama_mesh.config import ControlPlaneConfig
from llama_mesh.core.errors import (
    InvalidArgumentError,
    MeshError,
    NotFoundError,
    TaskError,
    TaskFailedError,
    UnauthenticatedError,
    UnavailableError,
)

if TYPE_CHECKING:
    # Imported where used: every component child runs the CLI, and only `up`,
    # `check` and `-f` need the deployment models.
    from llama_mesh.launch.deployment import Deployment

EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_ERROR = 5
DEFAULT_CONTROL_PLANE = ControlPlaneConfig().address
# What `up`, `check` and the client commands look for in the current directory.
DEPLOYMENT_FILE_NAMES = ("llama-mesh.yaml", "deployment.yaml")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_table(table: Table, *, wide: bool) -> None:
    """`table` on stdout: fitted to the terminal, or (`wide`) as wide as its cells."""
    if wide:  # rich fits a table to the console: give it one as wide as any table
        Console(highlight=False, width=_WIDE).print(table)
    else:
        out.print(table)


_WIDE = 1000


def error(message: str) -> None:
    """`error: message` on stderr (the message is plain text, never markup)."""
    err.print("[bold red]error:[/] " + escape(message))


class Output(enum.StrEnum):
    text = "text"
    wide = "wide"  # text, with whole names where tables shorten them to fit 80 columns
    json = "json"


ControlPlaneOption = Annotated[
    str | None,
    typer.Option(
        "--control-plane",
        "-c",
        envvar="LLAMA_MESH_CONTROL_PLANE",
        help="Control plane HOST:PORT.",
        show_default=False,
    ),
]
FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        envvar="LLAMA_MESH_DEPLOYMENT",
        help="Deployment file: use the control plane it runs (see `up`).",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Output,
    typer.Option(
        "--output",
        "-o",
        help="text for people (tables fit 80 columns), wide (whole names), json for scripts.",
    ),
]
RECONNECT_TIMEOUT = 30.0
"""Seconds a command waits for a control plane it has reached once to be back."""

ConnectTimeout = Annotated[
    float,
    typer.Option(
        envvar="LLAMA_MESH_CONNECT_TIMEOUT",
        help="Seconds to wait for a control plane that cannot be reached yet (0: fail at once).",
    ),
]


class Target:
    """Where the control plane is, and how the command prints."""

    def __init__(
        self,
        control_plane: str | None,
        file: Path | None,
        output: Output,
        connect_timeout: float,
    ) -> None:
        self.json = output is Output.json
        self.wide = output is Output.wide
        self.connect_timeout = connect_timeout
        self.credentials = Credentials.from_env()
        # Where the address came from, for the message when it cannot be reached.
        self.source = ""
        self.address = self._resolve(control_plane, file)

    def _resolve(self, control_plane: str | None, file: Path | None) -> str:
        if control_plane:
            return control_plane
        if file is None:
            file = _deployment_here()
            if file is None:
                self.source = " (the default address)"
                return DEFAULT_CONTROL_PLANE
        from llama_mesh.launch.up import read_run_file

        deployment = load_or_exit(file)
        self._use_deployment_credentials(deployment)
        running = read_run_file(deployment)
        if running is not None:
            self.source = f" (where `llama-mesh up {file}` runs it)"
            return str(running["control_plane"])
        self.source = f" ({file}'s control_plane: is `llama-mesh up {file}` running?)"
        if deployment.control_plane.port == 0:
            self.fail(
                EXIT_UNAVAILABLE,
                "Unavailable",
                f"deployment {deployment.name!r} ({file}) binds its control plane to a free "
                f"port and is not running: start it with `llama-mesh up {file}`",
            )
        return deployment.control_plane.address

    def _use_deployment_credentials(self, deployment: Deployment) -> None:
        """The admin token `up` wrote for the deployment, and the CA and client
        certificate its components use, unless the environment gives its own."""
        path = deployment.state_path / "auth" / "admin.token"
        if self.credentials.token is None and path.is_file():
            self.credentials = self.credentials.with_token(read_token_file(path))
        tls = deployment.component_tls()
        if tls is not None and self.credentials.ca_file is None and tls[0].is_file():
            self.credentials = self.credentials.with_tls(*tls)

    def fail(
        self, code: int, kind: str, message: str, *, text: str | None = None, **extra: Any
    ) -> NoReturn:
        """Say what went wrong (stderr, and stdout as JSON with -o json); exit.

        On stderr it is `error: KIND: MESSAGE`, or `error: TEXT` when given."""
        if self.json:
            print(json.dumps({"error": {"type": kind, "message": message, **extra}}), flush=True)
        error(text if text is not None else f"{kind}: {message}")
        raise typer.Exit(code)

    def emit(self, data: Any, text: Callable[[], None]) -> None:
        if self.json:
            print(json.dumps(data, ensure_ascii=False), flush=True)
        else:
            text()

    def run(self, main: Callable[[AsyncClient], Awaitable[None]]) -> None:
        """Run `main` with a client of the control plane; map mesh errors to messages
        and exit codes (`main` reports its own failures with `fail`)."""

        async def connected() -> None:
            address, timeout = self.address, self.connect_timeout
            # Nothing listening fails at once (unless --connect-timeout); a control plane
            # that restarts under a `run` or `tasks watch` is waited for, as by any client.
            async with AsyncClient(
                address,
                connect_timeout=timeout,
                reconnect_timeout=max(timeout, RECONNECT_TIMEOUT),
                credentials=self.credentials,
            ) as client:
                await main(client)

        try:
            asyncio.run(connected())
        except UnavailableError as e:
            # The client names the address too when it waited (--connect-timeout).
            reason = e.message.removeprefix(f"the control plane at {self.address} is unreachable: ")
            self.fail(
                EXIT_UNAVAILABLE,
                "UnavailableError",
                f"cannot reach the control plane at {self.address}{self.source}: {reason}. "
                "Is it running? Give its address with --control-plane or "
                "LLAMA_MESH_CONTROL_PLANE, or a deployment file with --file",
            )
        except NotFoundError as e:
            self.fail(EXIT_NOT_FOUND, "NotFoundError", e.message)
        except InvalidArgumentError as e:
            self.fail(EXIT_USAGE, "InvalidArgumentError", e.message)
        except UnauthenticatedError as e:
            if self.credentials.token is not None:
                self.fail(EXIT_ERROR, "UnauthenticatedError", e.message, grpc_code=e.code.name)
            # The server's message is about the header; a CLI user sets no headers.
            self.fail(
                EXIT_ERROR,
                "UnauthenticatedError",
                f"the control plane at {self.address} asks for a token and none was given: "
                "export LLAMA_MESH_TOKEN (the line `llama-mesh up` prints), set "
                "LLAMA_MESH_TOKEN_FILE, or give the deployment file with --file "
                "(its admin token)",
                grpc_code=e.code.name,
            )
        except TaskError as e:
            # The message names the error's type already ("task … failed: KeyError: …").
            self.fail(
                EXIT_TASK_FAILED,
                task_error_type(e),
                e.message,
                text=str(e),
                task=e.task_name,
                state=task_state(e.task),
                attempts=e.task.attempt_count,
                traceback=e.traceback or None,
            )
        except MeshError as e:
            self.fail(EXIT_ERROR, type(e).__name__, e.message, grpc_code=e.code.name)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def task_error_type(e: TaskError) -> str:
    if isinstance(e, TaskFailedError):
        return e.error_type or "TaskFailedError"
    return "TaskCancelledError"


def find_deployment_file(directory: Path | None = None) -> Path | None:
    """`llama-mesh.yaml` or `deployment.yaml` in `directory` (the current one), as a
    relative path when it is the current directory."""
    for name in DEPLOYMENT_FILE_NAMES:
        path = (directory or Path()) / name
        if path.is_file():
            return path
    return None


def _deployment_here() -> Path | None:
    """The current directory's deployment file, if it is one: a `deployment.yaml` of
    something else (Kubernetes, say) is not this CLI's business."""
    from llama_mesh.launch.deployment import DeploymentError, load_deployment

    path = find_deployment_file()
    if path is None:
        return None
    try:
        load_deployment(path)
    except DeploymentError:
        return None
    return path


def load_or_exit(file: Path, *, import_workflows: bool = False) -> Deployment:
    """The deployment file, validated (and its workflows imported); exit 2 if it is not."""
    from llama_mesh.launch.deployment import DeploymentError, check_workflows, load_deployment

    try:
        deployment = load_deployment(file)
        if import_workflows:
            check_workflows(deployment, file)
        return deployment
    except DeploymentError as e:
        error(str(e))
        raise typer.Exit(EXIT_USAGE) from None


def parse_input(target: Target, raw: str | None, args: list[str], what: str) -> dict[str, Any]:
    """--input JSON merged with --arg k=v (v is JSON if it parses, else a string)."""
    data: dict[str, Any] = {}
    if raw is not None:
        try:
            parsed = json.loads(raw)
        except ValueError as e:
            target.fail(EXIT_USAGE, "InvalidArgumentError", f"{what} is not JSON: {e}")
        if not isinstance(parsed, dict):
            target.fail(EXIT_USAGE, "InvalidArgumentError", f"{what} must be a JSON object")
        data.update(parsed)
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            target.fail(EXIT_USAGE, "InvalidArgumentError", f"--arg {arg!r} is not KEY=VALUE")
        try:
            data[key] = json.loads(value)
        except ValueError:
            data[key] = value
    return data
