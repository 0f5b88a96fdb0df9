"""`llama-mesh serve ...`: run one component of a deployment in this process.

Each prints one JSON line `{"ready": true, ...}` on stdout once it serves (with the
address it bound) and stops cleanly on SIGINT/SIGTERM, or when stdin closes if given
`--watch-stdin` (how `up` stops its children).

    llama-mesh serve control-plane --nats nats://127.0.0.1:4222 --port 0

What a component runs (the control plane, NATS, the worker, the gateway) is imported
inside its command: every other command, and `--help`, starts without them
(tests/cli/test_cli_imports.py).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from llama_mesh.cli.flags import parse, settings_flags
from llama_mesh.cli.logs import Format, Level
from llama_mesh.cli.target import (
    DEFAULT_CONTROL_PLANE,
    EXIT_ERROR,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    error,
)
from llama_mesh.config import (
    ControlPlaneConfig,
    GatewayConfig,
    NatsConfig,
    SecurityConfig,
    ServiceConfig,
    default_data_dir,
)
from llama_mesh.config.command_line import (
    CONTROL_PLANE_OPTIONS,
    GATEWAY_OPTIONS,
    NATS_OPTIONS,
    SERVICE_OPTIONS,
)
from llama_mesh.config.telemetry import LoggingConfig
from llama_mesh.core.access import ADMIN
from llama_mesh.core.errors import MeshError, UnavailableError
from llama_mesh.core.names import new_id
from llama_mesh.telemetry.logs import (
    capture_output,
    configure_logging,
    real_stdout,
    tag_process,
)
from llama_mesh.telemetry.tracing import exporting

# The RPC the gateway asks who a scraper of its /metrics is.
_CALLER_IDENTITY = "/llama_mesh.v1.AuthAPI/GetCallerIdentity"

WatchStdin = Annotated[
    bool, typer.Option(hidden=True, help="Also stop when stdin closes (used by `up`).")
]


def _ready(**fields: object) -> None:
    """One JSON line on stdout that says the component is serving (for supervisors)."""
    print(json.dumps({"ready": True, **fields}), file=real_stdout(), flush=True)


def _logging(level: Level, log_format: Format, component: str, service: str = "") -> None:
    configure_logging(
        LoggingConfig.model_validate({"level": level.value, "format": log_format.value}),
        component=component,
        service=service,
    )


LogLevel = Annotated[
    Level, typer.Option(help="debug, info, warning or error.", envvar="LLAMA_MESH_LOG_LEVEL")
]
LogFormatOption = Annotated[
    Format,
    typer.Option(
        help="text (for people) or json (one object per line, what `up` asks for).",
        envvar="LLAMA_MESH_LOG_FORMAT",
    ),
]


@settings_flags(NATS_OPTIONS)
def serve_nats(
    values: Mapping[str, Any],
    log_level: LogLevel = Level.warning,
    log_format: LogFormatOption = Format.text,
    watch_stdin: WatchStdin = False,
) -> None:
    """Run an embedded nats-server with JetStream."""
    _logging(log_level, log_format, "nats")
    settings = parse(NatsConfig, NATS_OPTIONS, values)
    from llama_mesh.launch.nats_server import EmbeddedNats
    from llama_mesh.launch.signals import until_signalled

    data_dir = settings.data_dir or default_data_dir()

    async def main() -> None:
        extra = ("-c", str(settings.server_config)) if settings.server_config else ()
        async with EmbeddedNats.start(
            data_dir, host=settings.host, port=settings.port, extra_args=extra
        ) as nats:
            _ready(component="nats", url=nats.url, pid=nats.process.pid)
            await until_signalled(watch_stdin=watch_stdin)

    asyncio.run(main())


@settings_flags(CONTROL_PLANE_OPTIONS)
def serve_control_plane(
    nats: Annotated[list[str], typer.Option(help="NATS URL (repeat for a cluster).")],
    values: Mapping[str, Any],
    log_level: LogLevel = Level.warning,
    log_format: LogFormatOption = Format.text,
    watch_stdin: WatchStdin = False,
) -> None:
    """Run a control plane (ControlPlane and Queue APIs)."""
    _logging(log_level, log_format, "control-plane")
    settings = parse(ControlPlaneConfig, CONTROL_PLANE_OPTIONS, values)
    nats_settings = parse(NatsConfig, CONTROL_PLANE_OPTIONS, values)
    security = parse(SecurityConfig, CONTROL_PLANE_OPTIONS, values)
    from llama_mesh.control_plane.server import ControlPlaneServer
    from llama_mesh.jetstream.topology import Topology
    from llama_mesh.launch.deployment_keys import load_install_file
    from llama_mesh.launch.signals import until_signalled

    try:
        keys = load_install_file(security.install_keys) if security.install_keys else []
    except (OSError, ValueError, KeyError) as e:
        error(f"--install-keys: {security.install_keys} cannot be read: {e}")
        raise typer.Exit(EXIT_USAGE) from None

    async def main() -> None:
        async with ControlPlaneServer.start(
            nats,
            host=settings.host,
            port=settings.port,
            topology=Topology.of(nats_settings),
            user_credentials=_credentials(nats_settings),
            nkeys_seed=str(nats_settings.nkey_seed) if nats_settings.nkey_seed else None,
            nats_tls=nats_settings.tls_context(),
            security=security,
            install_keys=keys,
            metrics_port=settings.metrics_port,
            retention=settings.retention,
        ) as cp:
            _ready(component="control-plane", address=cp.address, metrics=cp.metrics_url)
            await until_signalled(watch_stdin=watch_stdin)

    try:
        with exporting("control-plane"):
            asyncio.run(main())
    except (MeshError, OSError) as e:
        error(f"control plane: {e}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None


@settings_flags(SERVICE_OPTIONS)
def serve_service(
    workflow: Annotated[
        str | None,
        typer.Argument(help="The Workflow, as module:attribute (or give --deployment)."),
    ] = None,
    *,
    values: Mapping[str, Any],
    deployment: Annotated[
        Path | None,
        typer.Option(
            help="Build the service --name of this deployment file (a tool or human "
            "service, the orchestrator, the built-in agent service) instead of loading "
            "WORKFLOW."
        ),
    ] = None,
    control_plane: Annotated[str, typer.Option(help="Control plane HOST:PORT.")] = (
        DEFAULT_CONTROL_PLANE
    ),
    path: Annotated[Path | None, typer.Option(help="Directory to add to sys.path.")] = None,
    log_level: LogLevel = Level.warning,
    log_format: LogFormatOption = Format.text,
    watch_stdin: WatchStdin = False,
) -> None:
    """Run one replica of a workflow service."""
    config = parse(ServiceConfig, SERVICE_OPTIONS, values)
    _logging(log_level, log_format, "service", service=config.name)
    nats_settings = parse(NatsConfig, SERVICE_OPTIONS, values)
    security = parse(SecurityConfig, SERVICE_OPTIONS, values)
    replica_id = new_id()
    # Its lines carry the replica from the start: what the module prints as it is
    # imported too, which capture_output makes log lines (outside any task).
    tag_process(replica=replica_id)
    with capture_output(outside_tasks=True):
        loaded = _load_service(workflow, deployment, path, config.name)
        try:
            with exporting(config.name, instance_id=replica_id):
                asyncio.run(
                    _replica(
                        loaded,
                        config,
                        control_plane,
                        nats_settings,
                        security,
                        replica_id,
                        watch_stdin,
                    )
                )
        except UnavailableError as e:
            typer.echo(f"error: service {config.name}: {e}", err=True)
            raise typer.Exit(EXIT_UNAVAILABLE) from None


def _load_service(
    workflow: str | None, deployment: Path | None, path: Path | None, name: str
) -> Any:
    """The workflow (or the service built from the deployment file) a replica runs;
    a clear error and exit 2 if it does not load."""
    # Imported here: they pull in llama-index workflows, which the other commands
    # (and the control plane's process) do not need.
    from llama_mesh.worker.loader import WorkflowLoadError, load_workflow

    try:
        if workflow is not None:
            return load_workflow(workflow, path)
        if deployment is not None:
            from llama_mesh.launch.deployment import DeploymentError, load_deployment
            from llama_mesh.launch.service_builder import build_service

            try:
                return build_service(load_deployment(deployment), name)
            except DeploymentError as e:
                raise WorkflowLoadError(str(e)) from None
        raise WorkflowLoadError("give the workflow (module:attribute) or --deployment")
    except WorkflowLoadError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


async def _replica(
    loaded: Any,
    config: ServiceConfig,
    control_plane: str,
    nats_settings: NatsConfig,
    security: SecurityConfig,
    replica_id: str,
    watch_stdin: bool,
) -> None:
    from llama_mesh.launch.signals import until_signalled
    from llama_mesh.worker.runtime import ServiceRuntime

    async with ServiceRuntime.start(
        loaded,
        config,
        control_plane,
        user_credentials=_credentials(nats_settings),
        nkeys_seed=str(nats_settings.nkey_seed) if nats_settings.nkey_seed else None,
        nats_tls=nats_settings.tls_context(),
        security=security,
        replica_id=replica_id,
    ) as runtime:
        _ready(
            component="service",
            service=config.name,
            replica_id=runtime.replica_id,
            address=runtime.address,
            metrics=runtime.metrics_url,
        )
        await until_signalled(watch_stdin=watch_stdin, also=runtime.drained.wait())


@settings_flags(GATEWAY_OPTIONS)
def serve_gateway(
    upstream: Annotated[str, typer.Option(help="Control plane HOST:PORT (gRPC).")],
    values: Mapping[str, Any],
    log_level: LogLevel = Level.warning,
    log_format: LogFormatOption = Format.text,
    watch_stdin: WatchStdin = False,
) -> None:
    """Run the REST/JSON gateway (with /openapi.json and /healthz) for a control plane."""
    _logging(log_level, log_format, "gateway")
    settings = parse(GatewayConfig, GATEWAY_OPTIONS, values)
    from llama_mesh.launch.signals import until_signalled
    from llama_mesh_gateway import MetricsAccess
    from llama_mesh_gateway import serve as serve_http
    from llama_mesh_gateway.upstream_tls import UpstreamTls, UpstreamTlsError

    upstream_tls = None
    if settings.upstream_ca is not None:
        upstream_tls = UpstreamTls(
            settings.upstream_ca,
            settings.upstream_cert,
            settings.upstream_key,
            settings.upstream_server_name,
        )
        try:
            upstream_tls.credentials()
        except UpstreamTlsError as e:
            error(f"gateway: {e}")
            raise typer.Exit(EXIT_USAGE) from None
    # Who reads /metrics is the control plane's answer, as for every route: an admin
    # (with authentication off, every caller is one).
    metrics_access = None
    if not parse(SecurityConfig, GATEWAY_OPTIONS, values).open_metrics:
        metrics_access = MetricsAccess.parse(_CALLER_IDENTITY, f"identity.roles={ADMIN}")
    if settings.tls_cert is not None and settings.tls_key is not None:
        try:  # a certificate that cannot be used fails here, not at the first connection
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
                settings.tls_cert, settings.tls_key
            )
        except (OSError, ssl.SSLError) as e:
            error(f"gateway: --tls-cert {settings.tls_cert} / --tls-key: {e}")
            raise typer.Exit(EXIT_USAGE) from None

    async def main() -> None:
        def ready(server: Any) -> None:
            _ready(
                component="gateway",
                url=server.url,
                openapi=f"{server.url}/openapi.json",
                console=f"{server.url}/console/",
                metrics=f"{server.url}/metrics" if settings.metrics else None,
            )

        gateway = serve_http(
            upstream,
            settings.host,
            settings.port,
            cors_origins=settings.cors_origins,
            on_ready=ready,
            metrics=settings.metrics,
            metrics_access=metrics_access,
            upstream_tls=upstream_tls,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
            log_level=log_level,
        )
        await until_signalled(watch_stdin=watch_stdin, also=gateway)

    try:
        asyncio.run(main())
    except OSError as e:
        error(f"gateway cannot listen on {settings.host}:{settings.port}: {e.strerror}")
        raise typer.Exit(EXIT_ERROR) from None


def _credentials(nats: NatsConfig) -> str | None:
    return str(nats.credentials) if nats.credentials else None
