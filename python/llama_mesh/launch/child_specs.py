"""What `up` starts for each process of a deployment: its ChildSpec (supervisor.py).

The command line of each `python -m llama_mesh serve ...` child, derived from the
file's settings (config/command_line.py), with the file's paths made absolute (children
run elsewhere), the environment that lets it reach the control plane (its token, the
mesh's CA) and send its traces (the file's `otel:` as OTEL_* variables), how a
restart binds the port the first run chose, and, for a replica that dies, taking it
out of the registry (replica_hooks.py). nats-server is `up`'s own child (nats_spec).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llama_mesh.client._credentials import (
    CA_FILE_ENV,
    CERT_FILE_ENV,
    KEY_FILE_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
)
from llama_mesh.config import (
    GatewayConfig,
    NatsConfig,
    SecurityConfig,
    ServiceConfig,
)
from llama_mesh.config.command_line import (
    CONTROL_PLANE_OPTIONS,
    GATEWAY_OPTIONS,
    SERVICE_OPTIONS,
    to_argv,
)
from llama_mesh.core.names import AGENTS_SERVICE, ORCHESTRATOR_SERVICE
from llama_mesh.launch.deployment import Deployment, ServiceSpec
from llama_mesh.launch.deployment_keys import DeploymentKeys
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.launch.nats_users import CONTROL_PLANE as CONTROL_PLANE_USER
from llama_mesh.launch.nats_users import NatsUsers, service_user
from llama_mesh.launch.replica_hooks import deregister_replica, pause_replica
from llama_mesh.launch.supervisor import ChildSpec, Started
from llama_mesh.v1 import resources_pb2

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
    """The file's NATS settings with its paths made absolute (children run elsewhere);
    with `tls: auto`, the embedded server's clients connect over mTLS with the local CA."""
    paths = {
        field: d.resolve(value)
        for field in ("credentials", "tls_ca", "tls_cert", "tls_key")
        if (value := getattr(d.nats, field)) is not None
    }
    if (pki := d.local_pki) is not None and d.nats.embedded:
        paths.update(tls_ca=pki.ca_cert, tls_cert=pki.client_cert, tls_key=pki.client_key)
    return d.nats.model_copy(update={"data_dir": d.nats_data_dir, **paths})


def _nats_server_tls(d: Deployment) -> tuple[str, ...]:
    """nats-server's flags for `tls: auto`: the server certificate, and every client
    must present one the local CA signed."""
    pki = d.local_pki
    if pki is None:
        return ()
    return (
        *("--tlsverify", "--tlscert", str(pki.server_cert), "--tlskey", str(pki.server_key)),
        *("--tlscacert", str(pki.ca_cert)),
    )


def _as_user(d: Deployment, users: NatsUsers | None, user: str) -> NatsConfig:
    """The NATS settings of one component: its own nkey when `up` locked NATS down."""
    settings = _nats_settings(d)
    if users is None:
        return settings
    return settings.model_copy(update={"nkey_seed": users.seed_file(user)})


def _logs(d: Deployment, component: str) -> tuple[str, ...]:
    """A child's log options: its level from the file, JSON lines for up to collect."""
    return ("--log-level", d.logging.level_of(component), "--log-format", "json")


def nats_spec(
    d: Deployment,
    users: NatsUsers | None = None,
    logs: Callable[[str, bytes], None] | None = None,
) -> ChildSpec:
    """nats-server itself, as `up`'s child (a restart binds the port the first run chose);
    `logs(child, line)` gets what it logs."""
    settings = _nats_settings(d)
    data_dir = d.nats_data_dir
    config = ("-c", str(users.config_file)) if users is not None else ()
    # nats-server logs info and up; -D adds its debug lines (the collector drops the
    # lines below the file's level for it: launch/log_capture.py).
    debug = ("-D",) if d.logging.level_of("nats") == "debug" else ()
    on_line = None if logs is None else functools.partial(logs, "nats")

    async def start(first_ready: dict[str, Any] | None) -> Started:
        port = settings.port if first_ready is None else int(_port_of(first_ready["url"]))
        server = await EmbeddedNats.launch(
            data_dir,
            host=settings.host,
            port=port,
            extra_args=(*config, *_nats_server_tls(d), *debug),
            on_line=on_line,
        )
        ready = {"component": "nats", "url": server.url, "pid": server.process.pid}
        return Started(server.process, ready, server.stderr_reader)

    return ChildSpec("nats", critical=True, stop_timeout=15.0, start=start)


def _security(d: Deployment, keys: DeploymentKeys | None) -> SecurityConfig:
    """The file's security settings with its paths made absolute (`tls: auto`: the
    local CA's), and the keys `up` made."""
    paths = {
        field: d.resolve(value)
        for field in ("tls_cert", "tls_key", "tls_client_ca")
        if (value := getattr(d.security, field)) is not None
    }
    if (pki := d.local_pki) is not None:
        paths = {"tls_cert": pki.server_cert, "tls_key": pki.server_key}
        paths["tls_client_ca"] = pki.ca_cert
    install = keys.install_file if keys is not None else None
    return d.security.model_copy(update={**paths, "tls": None, "install_keys": install})


def _component_env(d: Deployment, token_file: Path | None) -> dict[str, str]:
    """How a child reaches the control plane: its token, and the mesh's CA for mTLS.
    What the operator exported (a token of another deployment, say) is blanked: it
    would stand in for the component's own."""
    env = dict.fromkeys((TOKEN_ENV, TOKEN_FILE_ENV, CA_FILE_ENV, CERT_FILE_ENV, KEY_FILE_ENV), "")
    if token_file is not None:
        env[TOKEN_FILE_ENV] = str(token_file)
    if (tls := d.component_tls()) is not None:
        env[CA_FILE_ENV], env[CERT_FILE_ENV], env[KEY_FILE_ENV] = map(str, tls)
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
        *_logs(d, "control_plane"),
    )
    return ChildSpec(
        "control-plane",
        argv,
        env={**os.environ, **d.otel.environment("control-plane")},
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
        *_logs(d, name),
    )
    token_file = keys.service_token_file(name) if keys is not None else None
    env = {**os.environ, **spec.env, **_component_env(d, token_file), **d.otel.environment(name)}
    fixed_port = bool(spec.port) or bool(spec.metrics_port)
    admin = keys.admin_token_file if keys is not None else None
    return _replicas(
        control_plane, name, argv, env, spec.replicas, overlap=not fixed_port, admin=admin
    )


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
        *_logs(d, name),
    )
    token_file = keys.service_token_file(name) if keys is not None else None
    env = {**os.environ, **_component_env(d, token_file), **d.otel.environment(name)}
    admin = keys.admin_token_file if keys is not None else None
    return _replicas(control_plane, name, argv, env, replicas, admin=admin)


def _replicas(
    control_plane: str,
    name: str,
    argv: list[str],
    env: dict[str, str],
    count: int,
    *,
    overlap: bool = True,
    admin: Path | None = None,
) -> list[ChildSpec]:
    leave = deregister_replica(control_plane, name, env)
    pause = pause_replica({**env, TOKEN_FILE_ENV: str(admin)} if admin is not None else env)
    return [
        # A draining replica may finish its tasks for up to 30 s before it exits.
        ChildSpec(
            f"{name}/{i + 1}",
            argv,
            env=env,
            stop_timeout=45.0,
            on_exit=leave,
            overlap=overlap,
            quiesce=pause,
        )
        for i in range(count)
    ]


def _gateway(d: Deployment) -> GatewayConfig:
    """The gateway's settings, paths made absolute. With TLS on and no upstream CA of
    its own, it reaches the control plane as the other components do: the mesh's CA,
    and the components' certificate for mTLS. `https`: the mesh's server certificate."""
    gateway = d.gateway.model_copy(
        update={
            field: d.resolve(value)
            for field in (
                "upstream_ca",
                "upstream_cert",
                "upstream_key",
                "tls_cert",
                "tls_key",
            )
            if (value := getattr(d.gateway, field)) is not None
        }
    )
    update: dict[str, Any] = {}
    tls = d.component_tls()
    if tls is not None and gateway.upstream_ca is None:
        update.update(zip(("upstream_ca", "upstream_cert", "upstream_key"), tls, strict=True))
    security = _security(d, None)
    if gateway.https and gateway.tls_cert is None:
        update.update(tls_cert=security.tls_cert, tls_key=security.tls_key)
    return gateway.model_copy(update=update)


def gateway_spec(d: Deployment, control_plane: str) -> ChildSpec:
    argv = _serve(
        "gateway",
        "--upstream",
        control_plane,
        *to_argv(GATEWAY_OPTIONS, _gateway(d), d.security),
        *_logs(d, "gateway"),
    )
    return ChildSpec(
        "gateway",
        argv,
        env={**os.environ, **d.otel.environment("gateway")},
        stop_timeout=15.0,
        stop_first=True,
        restart_argv=lambda ready: _with(argv, "--port", _port_of(ready["url"])),
    )
