"""`llama-mesh up FILE`: one deployment file, every process of it, in order.

Starts, each stage once the previous one is ready:

    1. nats-server with JetStream (unless the file gives NATS URLs)
    2. the control plane
    3. every replica of every service, and the gateway (it needs only the control plane)

nats-server is `up`'s own child (its death is seen at once; it is restarted on the same
data directory and port, never while the old one lives: see nats_server.py); the others
are `python -m llama_mesh serve ...` children (supervisor.py), given the addresses the
previous stage bound. A replica that dies leaves the registry at once. On SIGTERM or
Ctrl-C it stops them in the reverse order: the gateway, the services (they drain), the
control plane, NATS.

    code = asyncio.run(run_deployment(load_deployment(path), path, Console()))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llama_mesh.client import Credentials
from llama_mesh.client._credentials import (
    CA_FILE_ENV,
    CERT_FILE_ENV,
    KEY_FILE_ENV,
    TOKEN_FILE_ENV,
)
from llama_mesh.config import (
    GatewayConfig,
    NatsConfig,
    SecurityConfig,
    ServiceConfig,
    connect_host,
)
from llama_mesh.config.command_line import (
    CONTROL_PLANE_OPTIONS,
    GATEWAY_OPTIONS,
    SERVICE_OPTIONS,
    to_argv,
)
from llama_mesh.config.restarts import RestartConfig
from llama_mesh.core.names import AGENTS_SERVICE, ORCHESTRATOR_SERVICE, service_name
from llama_mesh.launch.deployment import Deployment, ServiceSpec
from llama_mesh.launch.deployment_keys import DeploymentKeys
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.launch.nats_users import CONTROL_PLANE as CONTROL_PLANE_USER
from llama_mesh.launch.nats_users import NatsUsers, service_user
from llama_mesh.launch.supervisor import (
    Child,
    ChildError,
    ChildSpec,
    Started,
    Supervisor,
    until_signalled,
)
from llama_mesh.v1 import control_plane_pb2, control_plane_pb2_grpc, resources_pb2

logger = logging.getLogger(__name__)

COMMAND = [sys.executable, "-m", "llama_mesh"]


def _with(argv: list[str], option: str, value: str) -> list[str]:
    """`argv` with `option`'s value replaced (for a restart on the port first bound)."""
    out = list(argv)
    out[out.index(option) + 1] = value
    return out


def _port_of(address: str) -> str:
    return address.rsplit(":", 1)[1]


def _serve(component: str, *args: str) -> list[str]:
    """The command line of a `serve` child; `up` stops it by closing its stdin."""
    return [*COMMAND, "serve", component, *args, "--watch-stdin"]


def _nats_settings(d: Deployment) -> NatsConfig:
    """The file's NATS settings with its paths made absolute (children run elsewhere)."""
    credentials = d.resolve(d.nats.credentials) if d.nats.credentials is not None else None
    return d.nats.model_copy(update={"data_dir": d.nats_data_dir, "credentials": credentials})


def _as_user(d: Deployment, users: NatsUsers | None, user: str) -> NatsConfig:
    """The NATS settings of one component: its own nkey when `up` locked NATS down."""
    settings = _nats_settings(d)
    if users is None:
        return settings
    return settings.model_copy(update={"nkey_seed": users.seed_file(user)})


def nats_spec(d: Deployment, users: NatsUsers | None = None) -> ChildSpec:
    """nats-server itself, as `up`'s child (a restart binds the port the first run chose)."""
    settings = _nats_settings(d)
    data_dir = d.nats_data_dir
    config = ("-c", str(users.config_file)) if users is not None else ()

    async def start(first_ready: dict[str, Any] | None) -> Started:
        port = settings.port if first_ready is None else int(_port_of(first_ready["url"]))
        server = await EmbeddedNats.launch(
            data_dir, host=settings.host, port=port, extra_args=config
        )
        ready = {"component": "nats", "url": server.url, "pid": server.process.pid}
        return Started(server.process, ready, server.stderr_reader)

    return ChildSpec("nats", critical=True, stop_timeout=15.0, start=start)


def _security(d: Deployment, keys: DeploymentKeys | None) -> SecurityConfig:
    """The file's security settings with its paths made absolute, and the keys `up` made."""
    paths = {
        field: d.resolve(value)
        for field in ("tls_cert", "tls_key", "tls_client_ca")
        if (value := getattr(d.security, field)) is not None
    }
    install = keys.install_file if keys is not None else None
    return d.security.model_copy(update={**paths, "install_keys": install})


def _component_env(d: Deployment, token_file: Path | None) -> dict[str, str]:
    """How a child reaches the control plane: its token, and the mesh's CA for mTLS."""
    security = _security(d, None)
    env: dict[str, str] = {}
    if token_file is not None:
        env[TOKEN_FILE_ENV] = str(token_file)
    if security.tls_client_ca is not None:
        env[CA_FILE_ENV] = str(security.tls_client_ca)
        env[CERT_FILE_ENV] = str(security.tls_cert)
        env[KEY_FILE_ENV] = str(security.tls_key)
    return env


def control_plane_spec(
    d: Deployment,
    nats_urls: list[str],
    keys: DeploymentKeys | None = None,
    users: NatsUsers | None = None,
) -> ChildSpec:
    nats = [arg for url in nats_urls for arg in ("--nats", url)]
    settings = _as_user(d, users, CONTROL_PLANE_USER)
    argv = _serve(
        "control-plane",
        *nats,
        *to_argv(CONTROL_PLANE_OPTIONS, d.control_plane, settings, _security(d, keys)),
    )
    return ChildSpec(
        "control-plane",
        argv,
        critical=True,
        stop_timeout=20.0,
        restart_argv=lambda ready: _with(argv, "--port", _port_of(ready["address"])),
    )


def service_specs(
    d: Deployment,
    name: str,
    spec: ServiceSpec,
    control_plane: str,
    keys: DeploymentKeys | None = None,
    users: NatsUsers | None = None,
) -> list[ChildSpec]:
    # A service with a source runs it; the others (tools, human) are built from the
    # file's section by the replica itself (launch/service_builder.py).
    what = [spec.source] if spec.source is not None else ["--deployment", str(d.file)]
    argv = _serve(
        "service",
        *what,
        "--control-plane",
        control_plane,
        "--path",
        str(d.service_path(spec)),
        *to_argv(
            SERVICE_OPTIONS,
            spec.named(name),
            _as_user(d, users, service_user(name)),
            _security(d, None),
        ),
    )
    token_file = keys.service_token_file(name) if keys is not None else None
    env = {**os.environ, **spec.env, **_component_env(d, token_file)}
    return _replicas(control_plane, name, argv, env, spec.replicas)


def orchestrator_specs(
    d: Deployment,
    control_plane: str,
    keys: DeploymentKeys | None = None,
    users: NatsUsers | None = None,
) -> list[ChildSpec]:
    """The orchestrator service of the file's `orchestrator` section (none if simple)."""
    section = d.orchestrator
    if not section.deployed:
        return []
    config = ServiceConfig(
        ORCHESTRATOR_SERVICE,
        kind=resources_pb2.SERVICE_KIND_ORCHESTRATOR,
        max_concurrency=section.max_concurrency,
        timeout=section.timeout,
    )
    return _built_in_specs(d, config, section.replicas, control_plane, keys, users)


def agents_specs(
    d: Deployment,
    control_plane: str,
    keys: DeploymentKeys | None = None,
    users: NatsUsers | None = None,
) -> list[ChildSpec]:
    """The built-in agent service on the file's `models:` (none without models): one
    replica, which the Agents and Responses APIs of the control plane send turns to."""
    if not d.runs_agents_service:
        return []
    return _built_in_specs(d, ServiceConfig(AGENTS_SERVICE), 1, control_plane, keys, users)


def _built_in_specs(
    d: Deployment,
    config: ServiceConfig,
    replicas: int,
    control_plane: str,
    keys: DeploymentKeys | None,
    users: NatsUsers | None,
) -> list[ChildSpec]:
    """A service the file does not list but `up` runs (built from the file's sections by
    its replicas: launch/service_builder.py)."""
    name = config.name
    argv = _serve(
        "service",
        "--deployment",
        str(d.file),
        "--control-plane",
        control_plane,
        *to_argv(
            SERVICE_OPTIONS,
            config,
            _as_user(d, users, service_user(name)),
            _security(d, None),
        ),
    )
    token_file = keys.service_token_file(name) if keys is not None else None
    env = {**os.environ, **_component_env(d, token_file)}
    return _replicas(control_plane, name, argv, env, replicas)


def _replicas(
    control_plane: str, name: str, argv: list[str], env: dict[str, str], count: int
) -> list[ChildSpec]:
    leave = _deregister(control_plane, name, env)
    return [
        # A draining replica may finish its tasks for up to 30 s before it exits.
        ChildSpec(f"{name}/{i + 1}", argv, env=env, stop_timeout=45.0, on_exit=leave)
        for i in range(count)
    ]


def _deregister(
    control_plane: str, service: str, env: dict[str, str]
) -> Callable[[Child], Awaitable[None]]:
    """What `up` does when a replica dies: take it out of the registry at once, with
    the replica's own credentials (it cannot do it itself any more)."""

    async def leave(child: Child) -> None:
        replica_id = str(child.ready.get("replica_id", ""))
        if not replica_id:
            return
        credentials = Credentials.from_env(env)
        async with credentials.channel(control_plane) as channel:
            stub = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
            try:
                await stub.DeregisterService(
                    control_plane_pb2.DeregisterServiceRequest(
                        name=service_name(service), replica_id=replica_id
                    ),
                    timeout=5,
                    metadata=credentials.metadata(),
                )
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:  # gone already: fine
                    raise
        logger.info("%s: replica %s deregistered", child.name, replica_id)

    return leave


def _gateway(d: Deployment) -> GatewayConfig:
    """The gateway's settings, paths made absolute. With TLS on and no upstream CA of
    its own, it reaches the control plane as the other components do: the mesh's CA,
    and the components' certificate for mTLS."""
    gateway = d.gateway.model_copy(
        update={
            field: d.resolve(value)
            for field in ("upstream_ca", "upstream_cert", "upstream_key")
            if (value := getattr(d.gateway, field)) is not None
        }
    )
    security = _security(d, None)
    if not security.tls or gateway.upstream_ca is not None:
        return gateway
    return gateway.model_copy(
        update={
            "upstream_ca": security.tls_client_ca,
            "upstream_cert": security.tls_cert,
            "upstream_key": security.tls_key,
        }
    )


def gateway_spec(d: Deployment, control_plane: str) -> ChildSpec:
    argv = _serve("gateway", "--upstream", control_plane, *to_argv(GATEWAY_OPTIONS, _gateway(d)))
    return ChildSpec(
        "gateway",
        argv,
        stop_timeout=15.0,
        stop_first=True,
        restart_argv=lambda ready: _with(argv, "--port", _port_of(ready["url"])),
    )


def _connectable(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"{connect_host(host)}:{port}"


async def start_children(d: Deployment, supervisor: Supervisor) -> dict[str, Any]:
    """Start every stage; return what runs where (the `up` ready line)."""
    pids: dict[str, int] = {}
    # An admin token for the operator, one per service for its replicas (0600 files).
    keys = (
        await asyncio.to_thread(DeploymentKeys.ensure, d.state_path / "auth", d.service_ids())
        if d.security.auth
        else None
    )
    # An embedded NATS admits only the mesh's components, each with its own nkey.
    users = (
        await asyncio.to_thread(
            NatsUsers.ensure, d.state_path / "auth" / "nats", d.nats.prefix, d.service_ids()
        )
        if d.nats.embedded and d.security.auth
        else None
    )
    if d.nats.embedded:
        [nats] = await supervisor.start_stage([nats_spec(d, users)])
        nats_urls = [str(nats.ready["url"])]
        pids[nats.name] = nats.pid
    else:
        nats_urls = d.nats.urls
    [cp] = await supervisor.start_stage([control_plane_spec(d, nats_urls, keys, users)])
    pids[cp.name] = cp.pid
    control_plane = _connectable(str(cp.ready["address"]))
    services: dict[str, list[dict[str, Any]]] = {}
    specs = [
        s
        for n, spec in d.services.items()
        for s in service_specs(d, n, spec, control_plane, keys, users)
    ]
    specs += agents_specs(d, control_plane, keys, users)
    specs += orchestrator_specs(d, control_plane, keys, users)
    # The gateway needs only the control plane: it starts beside the services.
    gateway_specs = [gateway_spec(d, control_plane)] if d.gateway.enabled else []
    gateway: dict[str, Any] = {}
    started = await supervisor.start_stage(specs + gateway_specs) if specs or gateway_specs else []
    # Where each component serves Prometheus metrics, by child name.
    metrics = {
        child.name: str(child.ready["metrics"])
        for child in [cp, *started]
        if child.ready.get("metrics")
    }
    for child in started:
        pids[child.name] = child.pid
        if gateway_specs and child.name == gateway_specs[0].name:
            gateway = {
                "url": child.ready["url"],
                "openapi": child.ready["openapi"],
                "console": child.ready["console"],
            }
        else:
            services.setdefault(str(child.ready["service"]), []).append(_replica(child))
    return {
        "ready": True,
        "component": "deployment",
        "name": d.name,
        "pid": os.getpid(),
        "nats": nats_urls,
        "control_plane": control_plane,
        "gateway": gateway.get("url"),
        "openapi": gateway.get("openapi"),
        "console": gateway.get("console"),
        "services": services,
        "metrics": metrics,
        "pids": pids,
        "admin_token_file": str(keys.admin_token_file) if keys is not None else None,
    }


def _replica(child: Child) -> dict[str, Any]:
    return {
        "replica_id": child.ready.get("replica_id"),
        "address": child.ready.get("address"),
        "pid": child.pid,
    }


def table(summary: dict[str, Any], deployment_file: Path) -> Table:
    """The rich table of what runs where."""
    out = Table(title=f"llama-mesh deployment {summary['name']!r}", title_justify="left")
    out.add_column("component")
    out.add_column("address")
    out.add_column("pid", justify="right")
    pids: dict[str, int] = summary["pids"]
    for url in summary["nats"]:
        out.add_row("NATS JetStream", url, str(pids.get("nats", "external")))
    out.add_row("control plane (gRPC)", summary["control_plane"], str(pids["control-plane"]))
    if summary["gateway"]:
        out.add_row("gateway (REST)", summary["gateway"], str(pids["gateway"]))
        out.add_row("OpenAPI", summary["openapi"], "")
        out.add_row("web console", summary["console"], "")
    for service, replicas in summary["services"].items():
        for i, replica in enumerate(replicas, 1):
            out.add_row(f"service {service} #{i}", replica["address"], str(replica["pid"]))
    for child, url in summary.get("metrics", {}).items():
        out.add_row(f"metrics {child}", url, "")
    token = summary.get("admin_token_file")
    out.caption = (
        (f"export LLAMA_MESH_TOKEN=$(cat {token})\n" if token else "")
        + f"llama-mesh status -f {deployment_file}    "
        f"grpcurl -plaintext {summary['control_plane']} list    Ctrl-C stops everything"
    )
    return out


async def _until_stopped(supervisor: Supervisor) -> str:
    """Wait for SIGINT/SIGTERM (returns "") or a critical child lost (returns why)."""
    await until_signalled(also=supervisor.failed.wait())
    return supervisor.failure


async def run_deployment(
    d: Deployment,
    deployment_file: Path,
    console: Console,
    *,
    json_output: bool = False,
    restarts: RestartConfig | None = None,
) -> int:
    """Run the deployment until SIGINT/SIGTERM; the exit code of `llama-mesh up`."""
    errors = Console(stderr=True, soft_wrap=True)
    restarts = restarts or d.restarts

    def report(kind: str, child: Child, fields: dict[str, Any]) -> None:
        if json_output:
            line = {"event": kind, "child": child.name, "pid": child.pid, **fields}
            print(json.dumps(line), flush=True)
        messages: dict[str, Callable[[], str]] = {
            "exited": lambda: f"{child.name} (pid {child.pid}) exited with code {fields['code']}",
            "restarted": lambda: (
                f"{child.name} restarted (pid {child.pid}, restart {fields['restarts']} "
                f"of {restarts.max_restarts} allowed within {restarts.window:g}s)"
            ),
            "restart_failed": lambda: f"{child.name} failed to restart: {fields['error']}",
            "gave_up": lambda: (
                f"{child.name} is not restarted again (restarted {fields['restarts']} "
                f"times within {restarts.window:g}s)"
            ),
        }
        errors.print(f"[bold yellow]llama-mesh up:[/] {escape(messages[kind]())}", highlight=False)

    supervisor = Supervisor(report=report, restarts=restarts)
    run_file = d.run_file
    startup = asyncio.create_task(start_children(d, supervisor))
    stopper = asyncio.create_task(_until_stopped(supervisor))
    code = 0
    try:
        done, _ = await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if startup not in done:
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError, ChildError):
                await startup
            return 1 if stopper.result() else 0
        try:
            summary = startup.result()
        except ChildError as err:
            errors.print(f"[bold red]llama-mesh up: cannot start {d.name!r}:[/] {escape(str(err))}")
            return 1
        await asyncio.to_thread(_write_run_file, run_file, summary)
        if json_output:
            print(json.dumps(summary), flush=True)
        else:
            console.print(table(summary, deployment_file))
        failure = await stopper
        if failure:
            errors.print(f"[bold red]llama-mesh up: stopping:[/] {escape(failure)}")
            code = 1
        return code
    finally:
        if not stopper.done():
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
        await supervisor.stop()
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(run_file.unlink)
        if not json_output:
            errors.print(f"llama-mesh up: {d.name!r} stopped", highlight=False)


def _write_run_file(path: Path, summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_run_file(d: Deployment) -> dict[str, Any] | None:
    """What a running `up` of this deployment recorded, if it still runs."""
    try:
        summary: dict[str, Any] = json.loads(d.run_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(summary["pid"]), 0)
    except (KeyError, ValueError, ProcessLookupError, PermissionError):
        return None
    return summary
