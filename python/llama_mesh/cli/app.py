"""The `llama-mesh` command line.

    llama-mesh up examples/quickstart/deployment.yaml     # everything, on this machine
    llama-mesh run echo --arg arg1=hello                  # "hello_result"
    llama-mesh status -o json                             # services, replicas, recent tasks
    llama-mesh serve control-plane --nats nats://...      # one component, for clusters

Client commands find the control plane from `--control-plane` (or
LLAMA_MESH_CONTROL_PLANE), else from `--file` (or LLAMA_MESH_DEPLOYMENT): the address
a running `up` of that file recorded, or the file's control_plane host and port; else
127.0.0.1:50051.

Exit codes (docs/cli.md): 0 success; 1 the task failed or was cancelled; 2 bad usage,
bad input or an invalid deployment file; 3 not found; 4 the control plane cannot be
reached; 5 any other error.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import grpc
import typer
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llama_mesh.client import AsyncClient, StreamedEvent, TaskHandle, task_result
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.errors import (
    InvalidArgumentError,
    MeshError,
    NotFoundError,
    TaskError,
    TaskFailedError,
    UnavailableError,
)
from llama_mesh.core.json_values import to_python
from llama_mesh.core.status import error_type, status_code
from llama_mesh.jetstream.topology import Topology
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.launch.supervisor import until_signalled
from llama_mesh.v1 import resources_pb2

if TYPE_CHECKING:
    # Imported where used: every component child runs this module, and only `up`,
    # `check` and `-f` need the deployment models.
    from llama_mesh.launch.deployment import Deployment

EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_ERROR = 5
DEFAULT_CONTROL_PLANE = "127.0.0.1:50051"

app = typer.Typer(
    help="llama-mesh: llama-index Workflows as services in a gRPC mesh.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
serve_app = typer.Typer(help="Run one component of a deployment in this process.")
sessions_app = typer.Typer(help="List, create, show and delete sessions.")
tasks_app = typer.Typer(help="List, show and cancel tasks; stream their events.")
app.add_typer(serve_app, name="serve")
app.add_typer(sessions_app, name="sessions")
app.add_typer(tasks_app, name="tasks")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _error(message: str) -> None:
    """`error: message` on stderr (the message is plain text, never markup)."""
    err.print("[bold red]error:[/] " + escape(message))


class Output(enum.StrEnum):
    text = "text"
    json = "json"


# ---------------------------------------------------------------- shared options

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
    Output, typer.Option("--output", "-o", help="text for people, json for scripts.")
]
ConnectTimeout = Annotated[
    float,
    typer.Option(
        envvar="LLAMA_MESH_CONNECT_TIMEOUT",
        help="Seconds to wait for an unreachable control plane.",
    ),
]
WatchStdin = Annotated[
    bool, typer.Option(hidden=True, help="Also stop when stdin closes (used by `up`).")
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
        self.connect_timeout = connect_timeout
        self.address = self._resolve(control_plane, file)

    def _resolve(self, control_plane: str | None, file: Path | None) -> str:
        if control_plane:
            return control_plane
        if file is None:
            return DEFAULT_CONTROL_PLANE
        from llama_mesh.launch.up import read_run_file

        deployment = _load_or_exit(file)
        running = read_run_file(deployment)
        if running is not None:
            return str(running["control_plane"])
        if deployment.control_plane.port == 0:
            self.fail(
                EXIT_UNAVAILABLE,
                "Unavailable",
                f"deployment {deployment.name!r} ({file}) binds its control plane to a free "
                f"port and is not running: start it with `llama-mesh up {file}`",
            )
        return deployment.control_plane.address

    def fail(self, code: int, kind: str, message: str, **extra: Any) -> NoReturn:
        """Say what went wrong (stderr, and stdout as JSON with -o json); exit."""
        if self.json:
            print(json.dumps({"error": {"type": kind, "message": message, **extra}}), flush=True)
        _error(f"{kind}: {message}")
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
            async with AsyncClient(address, reconnect_timeout=timeout) as client:
                await main(client)

        try:
            asyncio.run(connected())
        except UnavailableError as e:
            self.fail(
                EXIT_UNAVAILABLE,
                "Unavailable",
                f"cannot reach the control plane at {self.address}: {e.message}. Is it "
                "running? Give its address with --control-plane or LLAMA_MESH_CONTROL_PLANE, "
                "or a deployment file with --file",
            )
        except NotFoundError as e:
            self.fail(EXIT_NOT_FOUND, "NotFound", e.message)
        except InvalidArgumentError as e:
            self.fail(EXIT_USAGE, "InvalidArgument", e.message)
        except TaskError as e:
            self.fail(
                EXIT_TASK_FAILED,
                _task_error_type(e),
                e.message,
                task=e.task_name,
                state=_state(e.task),
                attempts=e.task.attempt_count,
            )
        except MeshError as e:
            self.fail(EXIT_ERROR, type(e).__name__, e.message, grpc_code=e.code.name)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def _task_error_type(e: TaskError) -> str:
    if isinstance(e, TaskFailedError):
        return e.error_type or "TaskFailed"
    return "Cancelled"


def _load_or_exit(file: Path, *, import_workflows: bool = False) -> Deployment:
    """The deployment file, validated (and its workflows imported); exit 2 if it is not."""
    from llama_mesh.launch.deployment import DeploymentError, check_workflows, load_deployment

    try:
        deployment = load_deployment(file)
        if import_workflows:
            check_workflows(deployment, file)
        return deployment
    except DeploymentError as e:
        _error(str(e))
        raise typer.Exit(EXIT_USAGE) from None


def _parse_input(target: Target, raw: str | None, args: list[str], what: str) -> dict[str, Any]:
    """--input JSON merged with --arg k=v (v is JSON if it parses, else a string)."""
    data: dict[str, Any] = {}
    if raw is not None:
        try:
            parsed = json.loads(raw)
        except ValueError as e:
            target.fail(EXIT_USAGE, "InvalidArgument", f"{what} is not JSON: {e}")
        if not isinstance(parsed, dict):
            target.fail(EXIT_USAGE, "InvalidArgument", f"{what} must be a JSON object")
        data.update(parsed)
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            target.fail(EXIT_USAGE, "InvalidArgument", f"--arg {arg!r} is not KEY=VALUE")
        try:
            data[key] = json.loads(value)
        except ValueError:
            data[key] = value
    return data


# ---------------------------------------------------------------- JSON views


def _time(ts: timestamp_pb2.Timestamp) -> str | None:
    return ts.ToJsonString() if ts.seconds or ts.nanos else None


def _state(task: resources_pb2.Task) -> str:
    return resources_pb2.TaskState.Name(task.state).removeprefix("TASK_STATE_")


def task_view(task: resources_pb2.Task) -> dict[str, Any]:
    """A task as the CLI prints it with -o json."""
    view: dict[str, Any] = {
        "name": task.name,
        "service": task.service,
        "state": _state(task),
        "input": to_python(task.input) if task.HasField("input") else {},
        "result": to_python(task.result) if task.HasField("result") else None,
        "error": None,
        "attempts": task.attempt_count,
        "parent_task": task.parent_task or None,
        "create_time": _time(task.create_time),
        "end_time": _time(task.end_time),
    }
    if task.HasField("error") and task.error.code:
        view["error"] = {
            "type": error_type(task.error),
            "code": status_code(task.error).name,
            "message": task.error.message,
        }
    if task.state == resources_pb2.TASK_STATE_WAITING_FOR_INPUT:
        request = task.input_request
        view["input_request"] = {
            "event_type": request.event_type,
            "payload": to_python(request.payload) if request.HasField("payload") else None,
            "accepted_event_types": list(request.accepted_event_types),
        }
    return view


def event_view(event: StreamedEvent) -> dict[str, Any]:
    view: dict[str, Any] = {
        "sequence": event.sequence,
        "type": event.type,
        "state": event.state,
        "attempt": event.attempt,
        "payload": event.payload,
    }
    if event.error_type or event.error_message:
        view["error"] = {"type": event.error_type, "message": event.error_message}
    return view


def session_view(session: resources_pb2.Session) -> dict[str, Any]:
    return {
        "name": session.name,
        "labels": dict(session.labels),
        "create_time": _time(session.create_time),
    }


def service_view(service: resources_pb2.Service) -> dict[str, Any]:
    replicas = [
        {
            "replica_id": r.replica_id,
            "address": r.address,
            "state": resources_pb2.ReplicaState.Name(r.state).removeprefix("REPLICA_STATE_"),
            "running_tasks": r.running_task_count,
            "max_concurrency": r.max_concurrency,
        }
        for r in service.replicas
    ]
    return {
        "name": service.name.removeprefix("services/"),
        "description": service.description,
        "replicas": replicas,
        "running_tasks": sum(r.running_task_count for r in service.replicas),
        "capacity": sum(r.max_concurrency for r in service.replicas),
    }


def _event_line(event: StreamedEvent) -> str:
    payload = "" if event.payload in (None, {}) else " " + json.dumps(event.payload)
    payload = escape(payload if len(payload) < 200 else payload[:197] + "...")
    error = escape(f" {event.error_type}: {event.error_message}") if event.error_message else ""
    kind = escape(event.type or event.state)
    state = "" if event.state == "UNSPECIFIED" else f" [dim]{event.state}[/]"
    return f"[dim]#{event.sequence}[/] {kind}{state}{payload}{error}"


# ---------------------------------------------------------------- serve


def _ready(**fields: object) -> None:
    """One JSON line on stdout that says the component is serving (for supervisors)."""
    print(json.dumps({"ready": True, **fields}), flush=True)


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
    watch_stdin: WatchStdin = False,
) -> None:
    """Run an embedded nats-server with JetStream."""
    _logging(log_level)

    async def main() -> None:
        async with EmbeddedNats.start(data_dir, host=host, port=port) as nats:
            _ready(component="nats", url=nats.url, pid=nats.process.pid)
            await until_signalled(watch_stdin=watch_stdin)

    asyncio.run(main())


@serve_app.command("control-plane")
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
        _error(f"--prefix: {e}")
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
        _error(f"control plane: {e}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None


@serve_app.command("service")
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


@serve_app.command("gateway")
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
        _error(f"gateway cannot listen on {host}:{port}: {e.strerror}")
        raise typer.Exit(EXIT_ERROR) from None


# ---------------------------------------------------------------- up / check


@app.command()
def up(
    file: Annotated[Path, typer.Argument(help="The deployment file (YAML).")],
    output: OutputOption = Output.text,
    max_restarts: Annotated[int, typer.Option(help="Restarts of a child that dies.")] = 3,
) -> None:
    """Start a whole deployment: NATS, control plane, services, gateway. Ctrl-C stops it."""
    from llama_mesh.launch.deployment import DeploymentError, check_ports_free
    from llama_mesh.launch.up import run_deployment

    deployment = _load_or_exit(file, import_workflows=True)
    busy = check_ports_free(deployment)
    if busy:
        _error(
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


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="The deployment file (YAML).")],
    output: OutputOption = Output.text,
) -> None:
    """Validate a deployment file and import its workflows; start nothing."""
    deployment = _load_or_exit(file, import_workflows=True)
    if output is Output.json:
        print(json.dumps({"valid": True, "deployment": deployment.model_dump(mode="json")}))
    else:
        services = ", ".join(f"{n} x{s.replicas}" for n, s in deployment.services.items())
        out.print(f"{file}: deployment {deployment.name!r} is valid; services: {services}")


# ---------------------------------------------------------------- run


@app.command()
def run(
    service: Annotated[str, typer.Argument(help="The service to run, e.g. echo.")],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Task input as a JSON object.")
    ] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option("--arg", "-a", help="KEY=VALUE input field (VALUE is JSON or a string)."),
    ] = None,
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="Run in this session (created if new).")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Task timeout in seconds.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the task name, exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not show events.")] = False,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 5.0,
) -> None:
    """Run a task of SERVICE; show its events live, then print its result as JSON."""
    target = Target(control_plane, file, output, connect_timeout)
    data = _parse_input(target, input, arg or [], "--input")

    async def main(client: AsyncClient) -> None:
        if session:
            s = await client.get_or_create_session(session)
        else:
            s = await client.create_session()
        handle = await s.create_task(service, timeout=timeout, input=data)
        if no_wait:
            target.emit(
                {"task": handle.name, "session": s.name},
                lambda: out.print(handle.name),
            )
            return
        if not quiet:
            await _show_events(handle, service)
        task = await handle.wait()
        result = task_result(task)  # a failed or cancelled task exits 1 in Target.run
        target.emit(
            task_view(task), lambda: print(json.dumps(result, ensure_ascii=False), flush=True)
        )

    target.run(main)


async def _show_events(handle: TaskHandle, service: str) -> None:
    """Events on stderr as they come (with a spinner on a terminal)."""
    status = err.status(f"{service}: waiting for a replica", spinner="dots")
    with status if err.is_terminal else contextlib.nullcontext():
        async for event in handle.events():
            err.print(_event_line(event))
            status.update(f"{service}: {event.state.lower().replace('_', ' ')}")
            if event.state == "WAITING_FOR_INPUT":
                err.print(
                    f"[yellow]{handle.name} waits for input:[/] llama-mesh send-event "
                    f"{handle.name} HumanResponseEvent --arg response=..."
                )


# ---------------------------------------------------------------- status


@app.command()
def status(
    limit: Annotated[int, typer.Option(help="How many recent tasks to show.")] = 10,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 5.0,
) -> None:
    """Services with their replicas, health and load; the most recent tasks."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        services = [service_view(s) for s in await client.list_services()]
        tasks = [task_view(t) for t in (await client.list_tasks("-"))[:limit]]
        health = await _health(target.address)
        data = {
            "control_plane": {"address": target.address, "health": health},
            "services": services,
            "recent_tasks": tasks,
        }
        target.emit(data, lambda: _print_status(data))

    target.run(main)


async def _health(address: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as e:
            return str(e.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _print_status(data: dict[str, Any]) -> None:
    cp = data["control_plane"]
    out.print(f"control plane {cp['address']}: [bold]{cp['health']}[/]")
    services = Table(title="services", title_justify="left")
    for column in ("service", "replica", "state", "load", "address"):
        services.add_column(column)
    for s in data["services"]:
        if not s["replicas"]:
            services.add_row(s["name"], "-", "NO REPLICAS", "", "")
        for r in s["replicas"]:
            load = f"{r['running_tasks']}/{r['max_concurrency']}"
            services.add_row(s["name"], r["replica_id"][:8], r["state"], load, r["address"])
    out.print(services)
    out.print(_tasks_table(data["recent_tasks"], "recent tasks"))


def _tasks_table(tasks: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("task", overflow="fold")
    for column in ("service", "state", "attempts", "created"):
        table.add_column(column)
    for t in tasks:
        state = t["state"] + (f" ({t['error']['type']})" if t["error"] else "")
        table.add_row(t["name"], t["service"], state, str(t["attempts"]), t["create_time"] or "")
    return table


# ---------------------------------------------------------------- sessions


@sessions_app.command("list")
def sessions_list(
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 5.0,
) -> None:
    """List sessions."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        sessions = [session_view(s) for s in await client.list_sessions()]

        def text() -> None:
            for s in sessions:
                out.print(f"{s['name']}  {s['create_time'] or ''}")

        target.emit(sessions, text)

    target.run(main)


@sessions_app.command("create")
def sessions_create(
    session_id: Annotated[str | None, typer.Argument(help="Id (default: a new one).")] = None,
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE label (repeat).")] = None,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 5.0,
) -> None:
    """Create a session."""
    target = Target(control_plane, file, output, connect_timeout)
    labels = {k: str(v) for k, v in _parse_input(target, None, label or [], "--label").items()}

    async def main(client: AsyncClient) -> None:
        session = await client.create_session(session_id, labels=labels)
        target.emit(session_view(session.session), lambda: out.print(session.name))

    target.run(main)


@sessions_app.command("get")
def sessions_get(
    session: Annotated[str, typer.Argument(help="Session id or name.")],
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 5.0,
) -> None:
    """Show a session and its tasks."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        found = await client.get_session(session)
        tasks = [task_view(t) for t in await found.list_tasks()]
        data = {**session_view(found.session), "tasks": tasks}

        def text() -> None:
            out.print(f"{data['name']}  created {data['create_time']}  labels {data['labels']}")
            out.print(_tasks_table(tasks, "tasks"))

        target.emit(data, text)

    target.run(main)


@sessions_app.command("delete")
def sessions_delete(
    session: Annotated[str, typer.Argument(help="Session id or name.")],
    force: Annotated[bool, typer.Option(help="Also cancel its running tasks.")] = False,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 5.0,
) -> None:
    """Delete a session."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        await client.delete_session(session, force=force)
        target.emit({"deleted": session}, lambda: out.print(f"deleted {session}"))

    target.run(main)


# ---------------------------------------------------------------- tasks


def _states(target: Target, names: list[str]) -> list[resources_pb2.TaskState.ValueType]:
    states = []
    for name in names:
        try:
            states.append(resources_pb2.TaskState.Value("TASK_STATE_" + name.upper()))
        except ValueError:
            valid = [
                n.removeprefix("TASK_STATE_")
                for n, _ in resources_pb2.TaskState.items()
                if not n.endswith("UNSPECIFIED")
            ]
            target.fail(
                EXIT_USAGE,
                "InvalidArgument",
                f"--state {name!r} is not a task state; use one of {', '.join(valid)}",
            )
    return states


@tasks_app.command("list")
def tasks_list(
    session: Annotated[
        str, typer.Option("--session", "-s", help="Session id ('-': all sessions).")
    ] = "-",
    state: Annotated[
        list[str] | None,
        typer.Option(help="Only tasks in this state, e.g. RUNNING, WAITING_FOR_INPUT (repeat)."),
    ] = None,
    service: Annotated[str, typer.Option(help="Only tasks of this service.")] = "",
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 5.0,
) -> None:
    """List tasks, newest first."""
    target = Target(control_plane, file, output, connect_timeout)
    states = _states(target, state or [])

    async def main(client: AsyncClient) -> None:
        found = await client.list_tasks(session, states=states, service=service)
        tasks = [task_view(t) for t in found[:limit]]
        target.emit(tasks, lambda: out.print(_tasks_table(tasks, "tasks")))

    target.run(main)


@tasks_app.command("get")
def tasks_get(
    task: Annotated[str, typer.Argument(help="sessions/{session}/tasks/{task}")],
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 5.0,
) -> None:
    """Show a task: state, input, result or error."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        view = task_view(await client.get_task(task))
        target.emit(view, lambda: out.print_json(json.dumps(view)))

    target.run(main)


@tasks_app.command("cancel")
def tasks_cancel(
    task: Annotated[str, typer.Argument(help="sessions/{session}/tasks/{task}")],
    reason: Annotated[str, typer.Option(help="Why; kept in the task's error.")] = "",
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 5.0,
) -> None:
    """Cancel a task (a no-op for a finished one)."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        handle = client.task(task)
        cancelled = await handle.cancel(reason)
        assert handle.task is not None
        view = {**task_view(handle.task), "already_finished": not cancelled}
        message = "cancel requested" if cancelled else "it had finished already"
        target.emit(view, lambda: out.print(f"{task}: {message}"))

    target.run(main)


@tasks_app.command("events")
def tasks_events(
    task: Annotated[str, typer.Argument(help="sessions/{session}/tasks/{task}")],
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Stream until the task finishes.")
    ] = False,
    after: Annotated[int, typer.Option(help="Only events after this sequence.")] = 0,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 5.0,
) -> None:
    """The events of a task (one JSON line each with -o json).

    Without --follow the task must have finished; with it, events are printed as they
    come until the last one.
    """
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        handle = client.task(task)
        current = await handle.get()
        if not follow and current.state not in (
            resources_pb2.TASK_STATE_SUCCEEDED,
            resources_pb2.TASK_STATE_FAILED,
            resources_pb2.TASK_STATE_CANCELLED,
        ):
            target.fail(
                EXIT_USAGE,
                "FailedPrecondition",
                f"{task} is {_state(current)}; use --follow to stream its events until it finishes",
            )
        async for event in handle.events(after_sequence=after):
            if target.json:
                print(json.dumps(event_view(event), ensure_ascii=False), flush=True)
            else:
                out.print(_event_line(event))

    target.run(main)


@app.command("send-event")
def send_event(
    task: Annotated[str, typer.Argument(help="sessions/{session}/tasks/{task}")],
    event_type: Annotated[str, typer.Argument(help="Event type, e.g. HumanResponseEvent.")],
    payload: Annotated[
        str | None, typer.Option("--payload", "-p", help="Event fields as a JSON object.")
    ] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option("--arg", "-a", help="KEY=VALUE event field (VALUE is JSON or a string)."),
    ] = None,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 5.0,
) -> None:
    """Send an event into a task that waits for input (human in the loop)."""
    target = Target(control_plane, file, output, connect_timeout)
    fields = _parse_input(target, payload, arg or [], "--payload")

    async def main(client: AsyncClient) -> None:
        updated = await client.task(task).send_event(event_type, **fields)
        view = task_view(updated)
        target.emit(view, lambda: out.print(f"{task}: sent {event_type}; now {view['state']}"))

    target.run(main)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
