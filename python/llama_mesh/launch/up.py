"""`llama-mesh up FILE`: one deployment file, every process of it, in order.

Starts, each stage once the previous one is ready:

    1. nats-server with JetStream (unless the file gives NATS URLs)
    2. the control plane
    3. every replica of every service, and the gateway (it needs only the control plane)

nats-server is `up`'s own child (its death is seen at once; it is restarted on the same
data directory and port, never while the old one lives: see nats_server.py); the others
are `python -m llama_mesh serve ...` children (supervisor.py; their command lines:
child_specs.py), given the addresses the previous stage bound. A replica that dies
leaves the registry at once. On SIGTERM or Ctrl-C it stops them in the reverse order:
the gateway, the services (they drain), the control plane, NATS.

    code = asyncio.run(run_deployment(load_deployment(path), path, Console()))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llama_mesh.config import (
    connect_host,
)
from llama_mesh.config.restarts import RestartConfig
from llama_mesh.core.tasks import cancel_and_wait
from llama_mesh.launch.certificates import LocalPki
from llama_mesh.launch.child_specs import (
    agents_specs,
    control_plane_spec,
    gateway_spec,
    nats_spec,
    orchestrator_specs,
    service_specs,
)
from llama_mesh.launch.deployment import Deployment
from llama_mesh.launch.deployment_keys import DeploymentKeys
from llama_mesh.launch.log_capture import LogCollector, log_socket
from llama_mesh.launch.nats_users import NatsUsers
from llama_mesh.launch.signals import until_signalled
from llama_mesh.launch.supervisor import (
    Child,
    ChildError,
    ChildSpec,
    Supervisor,
)
from llama_mesh.launch.watch import Respec, SourceWatch

logger = logging.getLogger(__name__)


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
    # `tls: auto`: a local CA and certificates, kept across restarts, renewed if due.
    if (pki := d.local_pki) is not None:
        await asyncio.to_thread(LocalPki.create, pki.directory, d.tls_hosts())
    if d.nats.embedded:
        [nats] = await supervisor.start_stage([nats_spec(d, users, supervisor.on_stderr)])
        nats_urls = [str(nats.ready["url"])]
        pids[nats.name] = nats.pid
    else:
        nats_urls = d.nats.urls
    [cp] = await supervisor.start_stage([control_plane_spec(d, nats_urls, keys, users)])
    pids[cp.name] = cp.pid
    control_plane = _connectable(str(cp.ready["address"]))
    services: dict[str, list[dict[str, Any]]] = {}
    specs = replica_specs(d, control_plane, keys, users)
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
    tls = d.component_tls()
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
        "tls": dict(zip(("ca", "cert", "key"), map(str, tls), strict=True)) if tls else None,
    }


def replica_specs(
    d: Deployment,
    control_plane: str,
    keys: DeploymentKeys | None,
    users: NatsUsers | None,
) -> list[ChildSpec]:
    """Every replica of every service `up` runs."""
    specs = [
        s
        for n, spec in d.services.items()
        for s in service_specs(d, n, spec, control_plane, keys, users)
    ]
    specs += agents_specs(d, control_plane, keys, users)
    specs += orchestrator_specs(d, control_plane, keys, users)
    return specs


def _respec(summary: dict[str, Any]) -> Respec:
    """The replicas of a changed deployment file (`--watch`), reaching the control plane
    `up` started with the keys and NATS users start_children made (a file whose
    security or services changed needs a new `up`: watch.file_changes)."""

    def respec(d: Deployment) -> dict[str, ChildSpec]:
        auth = d.state_path / "auth"
        keys = DeploymentKeys(auth) if d.security.auth else None
        users = NatsUsers(auth / "nats") if d.nats.embedded and d.security.auth else None
        specs = replica_specs(d, str(summary["control_plane"]), keys, users)
        return {spec.name: spec for spec in specs}

    return respec


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
    tls = summary.get("tls")
    grpcurl = "-plaintext"
    exports = [f"export LLAMA_MESH_TOKEN=$(cat {token})"] if token else []
    if tls:
        grpcurl = f"-cacert {tls['ca']} -cert {tls['cert']} -key {tls['key']}"
        exports += [f"export LLAMA_MESH_CA_FILE={tls['ca']}"]
        exports += [f"export LLAMA_MESH_CERT_FILE={tls['cert']}"]
        exports += [f"export LLAMA_MESH_KEY_FILE={tls['key']}"]
    out.caption = "".join(line + "\n" for line in exports) + (
        f"llama-mesh status -f {deployment_file}    "
        f"grpcurl {grpcurl} {summary['control_plane']} list    Ctrl-C stops everything"
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
    watch: bool = False,
) -> int:
    """Run the deployment until SIGINT/SIGTERM; the exit code of `llama-mesh up`. With
    `watch`, restart the services whose source changes (launch/watch.py)."""
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

    def announce(kind: str, fields: dict[str, Any]) -> None:
        """What --watch did (or could not do): a JSON event, or a line on stderr."""
        if kind == "reloaded":
            _reloaded(summary, fields)
            _write_run_file(run_file, summary)
        if json_output:
            print(json.dumps({"event": kind, **fields}), flush=True)
        colour = "bold red" if kind == "reload_failed" else "bold yellow"
        errors.print(f"[{colour}]llama-mesh up:[/] {escape(fields['message'])}", highlight=False)

    summary: dict[str, Any] = {}
    run_file = d.run_file
    logs = LogCollector(
        d.log_file,
        show=d.logging.format,
        show_level=d.logging.terminal_level,
        levels={"nats": d.logging.level_of("nats")},
        max_bytes=int(d.logging.max_file_size),
        backups=d.logging.max_files,
    )
    supervisor = Supervisor(report=report, restarts=restarts, on_stderr=logs.add)
    async with logs.serving(log_socket(d.state_path)):
        startup = asyncio.create_task(start_children(d, supervisor))
        stopper = asyncio.create_task(_until_stopped(supervisor))
        watching: asyncio.Task[None] | None = None
        stop_watching = asyncio.Event()
        code = 0
        try:
            done, _ = await asyncio.wait({startup, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if startup not in done:
                startup.cancel()
                with contextlib.suppress(asyncio.CancelledError, ChildError):
                    await startup
                return 1 if stopper.result() else 0
            try:
                summary.update(startup.result())
            except ChildError as err:
                errors.print(
                    f"[bold red]llama-mesh up: cannot start {d.name!r}:[/] {escape(str(err))}"
                )
                return 1
            summary["logs"] = {"file": str(d.log_file), "socket": str(log_socket(d.state_path))}
            await asyncio.to_thread(_write_run_file, run_file, summary)
            if watch:
                watching = await _start_watch(d, supervisor, summary, announce, stop_watching)
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
                await cancel_and_wait(stopper)
            if watching is not None:
                stop_watching.set()  # ends the watch thread; cancel ends a restart
                await cancel_and_wait(watching)
            await supervisor.stop()
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(run_file.unlink)
            if not json_output:
                errors.print(f"llama-mesh up: {d.name!r} stopped", highlight=False)


async def _start_watch(
    d: Deployment,
    supervisor: Supervisor,
    summary: dict[str, Any],
    announce: Callable[[str, dict[str, Any]], None],
    stop: asyncio.Event,
) -> asyncio.Task[None]:
    """The --watch task, once its directories are watched (a file saved after `up`
    says it is ready restarts what it changes)."""
    source_watch = SourceWatch(d, supervisor, _respec(summary), announce)
    started = asyncio.Event()
    watching = asyncio.create_task(source_watch.run(stop, started), name="watch-sources")
    started_or_failed = asyncio.create_task(started.wait())
    await asyncio.wait({watching, started_or_failed}, return_when=asyncio.FIRST_COMPLETED)
    started_or_failed.cancel()
    if watching.done():
        watching.result()  # why it could not watch
    summary["watching"] = [str(path) for path in source_watch.roots]
    return watching


def _reloaded(summary: dict[str, Any], fields: dict[str, Any]) -> None:
    """The run file's record of a replica that --watch restarted."""
    summary["pids"][fields["child"]] = fields["pid"]
    for replica in summary["services"].get(fields["service"], []):
        if replica["pid"] == fields["old_pid"]:
            replica.update(pid=fields["pid"], replica_id=fields["replica_id"])


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
