"""What a deployment file must satisfy beyond each field's own rules, and what `up` and
`check` verify before anything starts.

    problems = list(cross_checks(deployment))   # ((field path), message) pairs
    busy = check_ports_free(deployment)         # fixed ports another process holds
    check_workflows(deployment, path)           # builds every service; DeploymentError

cross_checks runs when the file is read (parse_deployment): ports, paths, what each kind
of service needs, the orchestrator, security. The other two touch the machine: they run
when a deployment is about to start.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from llama_mesh.core.names import AGENTS_SERVICE, ORCHESTRATOR_SERVICE
from llama_mesh.launch.deployment_errors import DeploymentError, at, dotted
from llama_mesh.rpc.server import is_loopback
from llama_mesh.v1 import resources_pb2

if TYPE_CHECKING:
    from llama_mesh.launch.deployment import Deployment
    from llama_mesh.launch.service_specs import ServiceSpec


def _fixed_ports(d: Deployment) -> Iterator[tuple[tuple[str, ...], str, int]]:
    if d.nats.embedded and d.nats.port > 0:
        yield ("nats", "port"), d.nats.host, d.nats.port
    if d.control_plane.port:
        yield ("control_plane", "port"), d.control_plane.host, d.control_plane.port
    if metrics_port := d.control_plane.metrics_port:
        yield ("control_plane", "metrics_port"), d.control_plane.host, metrics_port
    if d.gateway.enabled and d.gateway.port:
        yield ("gateway", "port"), d.gateway.host, d.gateway.port
    for name, service in d.services.items():
        if service.port:
            yield ("services", name, "port"), service.host, service.port
        if metrics_port := service.metrics_port:
            yield ("services", name, "metrics_port"), service.host, metrics_port


def cross_checks(d: Deployment) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Problems that need the whole file, as (field path, message): yielded, not raised,
    so that the file's reader sees them all at once."""
    seen: dict[int, tuple[str | int, ...]] = {}
    for loc, _, port in _fixed_ports(d):
        if port in seen:
            yield loc, f"port {port} is also {dotted(seen[port])}: every server needs its own port"
        else:
            seen[port] = loc
    services = d.service_ids()
    for component in d.logging.components:
        if component not in {"nats", "control_plane", "gateway", *services}:
            yield (
                ("logging", "components", component),
                f"no component {component!r}: nats, control_plane, gateway or a service id "
                f"({', '.join(sorted(services)) or 'none in this file'})",
            )
    for name, service in d.services.items():
        for field in ("port", "metrics_port"):
            if getattr(service, field) and service.replicas > 1:
                yield (
                    ("services", name, field),
                    f"a fixed port serves one replica, not {service.replicas}: use {field} 0",
                )
        if service.path is not None and not d.service_path(service).is_dir():
            yield (("services", name, "path"), f"{d.service_path(service)} is not a directory")
    yield from _kind_checks(d)
    if not d.nats.embedded and d.nats.data_dir is not None:
        yield ("nats", "data_dir"), "applies only to embedded NATS; remove it or remove 'url'"
    if d.nats.credentials is not None and not d.resolve(d.nats.credentials).is_file():
        yield ("nats", "credentials"), f"{d.resolve(d.nats.credentials)} is not a file"
    yield from _security_checks(d)


def _security_checks(d: Deployment) -> Iterator[tuple[tuple[str, ...], str]]:
    security = d.security
    if security.install_keys is not None:
        yield ("security", "install_keys"), "`up` makes and installs the keys itself: remove it"
    if security.tls_cert and security.tls_client_ca is None:
        yield (
            ("security", "tls_client_ca"),
            "`up` gives its components mTLS: name the CA that signed tls_cert (and their "
            "client certificates) here",
        )
    gateway = d.gateway
    if gateway.enabled and gateway.https and not (gateway.tls_cert or security.serves_tls):
        yield (
            ("gateway", "https"),
            "serves HTTPS with the mesh's server certificate: set security.tls: auto "
            "(or tls_cert and tls_key), or give the gateway its own tls_cert and tls_key",
        )
    servers: list[tuple[tuple[str, ...], str]] = [(("control_plane", "host"), d.control_plane.host)]
    servers += [(("services", n, "host"), s.host) for n, s in d.services.items()]
    if d.gateway.enabled:
        servers.append((("gateway", "host"), d.gateway.host))
    for loc, host in servers:
        if not is_loopback(host) and not (security.auth and security.serves_tls):
            yield (
                loc,
                f"listening on {host} without TLS and authentication lets anyone who can "
                "reach it call every RPC: set security.tls: auto (or tls_cert, tls_key and "
                "tls_client_ca) and keep security.auth on, or listen on 127.0.0.1 "
                "(docs/security.md)",
            )


def _agent_checks(
    d: Deployment, at: tuple[str, ...], service: ServiceSpec
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """An agent without a `source` is built from a model of the file."""
    if service.model is None:
        yield (
            (*at, "kind"),
            (
                "an agent needs a `source` (module:attribute of a llama-index agent) or a "
                "`model` (an id of `models:`) to be built from"
            ),
        )
    elif service.model not in d.models:
        yield (
            (*at, "model"),
            (f"no model {service.model!r} in `models:`; models: {sorted(d.models)}"),
        )


def _kind_checks(d: Deployment) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """What each kind of service needs: a tool service its tools, a human service no
    code, every other one its source; and what the orchestrator needs."""
    for name, service in d.services.items():
        at: tuple[str, ...] = ("services", name)
        if service.kind == resources_pb2.SERVICE_KIND_TOOL:
            if not service.tools:
                yield (*at, "kind"), "a tool service needs `tools`: module:attribute references"
            if service.source is not None:
                yield (*at, "source"), "a tool service has `tools`, not a `source`"
        elif service.kind == resources_pb2.SERVICE_KIND_HUMAN:
            if service.source is not None:
                yield (*at, "source"), "a human service needs no code: remove `source`"
        elif service.kind == resources_pb2.SERVICE_KIND_AGENT and service.source is None:
            yield from _agent_checks(d, at, service)
        elif service.source is None:
            yield at, "'source' is required (or `kind: tools` / `kind: human`)"
        built = service.kind == resources_pb2.SERVICE_KIND_AGENT and service.source is None
        if service.tools and service.kind != resources_pb2.SERVICE_KIND_TOOL and not built:
            yield (
                (*at, "tools"),
                (
                    "only a tool service, or an agent built from a `model`, has tools: add "
                    "`kind: tools`, or `kind: agent` and `model` in place of `source`"
                ),
            )
        for field in ("model", "system_prompt", "mesh_tools"):
            if getattr(service, field) and not built:
                yield (
                    (*at, field),
                    (
                        f"only an agent built from a `model` has `{field}`: add `kind: agent` "
                        "and `model`, with no `source`"
                    ),
                )
        if service.prompt is not None and service.kind != resources_pb2.SERVICE_KIND_HUMAN:
            yield (*at, "prompt"), "only a human service has a prompt: add `kind: human`"
    if d.models and AGENTS_SERVICE in d.services:
        yield (
            ("services", AGENTS_SERVICE),
            f"{AGENTS_SERVICE!r} is the id of the built-in agent service, which `up` runs "
            "when the file has models: rename this service",
        )
    orchestrator = d.orchestrator
    at = ("orchestrator",)
    if orchestrator.deployed and ORCHESTRATOR_SERVICE in d.services:
        reserved = f"{ORCHESTRATOR_SERVICE!r} is the id of the orchestrator service"
        yield ("services", ORCHESTRATOR_SERVICE), f"{reserved}: rename this service"
    if orchestrator.kind == "pipeline":
        if not orchestrator.steps:
            yield (*at, "steps"), "a pipeline needs at least one step"
        names: list[str] = []
        for i, step in enumerate(orchestrator.pipeline_steps):
            if step.service not in d.services:
                services = sorted(d.services)
                yield (
                    (*at, "steps", i),
                    f"no service {step.service!r} in this file; services: {services}",
                )
            if step.name in names:
                yield (*at, "steps", i), f"two steps are named {step.name!r}: give one an id"
            missing = [name for name in step.after or () if name not in names]
            if missing:
                yield (
                    (*at, "steps", i),
                    (f"step {step.name!r} follows {missing}, which are not steps listed before it"),
                )
            names.append(step.name)
    elif orchestrator.steps:
        yield (*at, "steps"), "only a pipeline has steps: add `kind: pipeline`"
    if orchestrator.kind == "agentic" and orchestrator.source is None:
        yield (
            (*at, "source"),
            (
                "an agentic orchestrator needs `source`: module:attribute of an "
                "AgenticOrchestrator (with its model)"
            ),
        )
    if orchestrator.kind == "pipeline" and orchestrator.source is not None:
        yield (*at, "source"), "a pipeline is made from `steps`: remove `source`"


def check_ports_free(d: Deployment) -> list[str]:
    """Fixed ports of the deployment that another process holds already."""
    busy = []
    for loc, host, port in _fixed_ports(d):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as err:
                busy.append(f"{dotted(loc)}: {host}:{port} is not free ({err.strerror})")
    return busy


def check_workflows(d: Deployment, path: Path) -> None:
    """Build every service's workflow (with its env), and the orchestrator, so that a bad
    source, tool or orchestrator fails before anything starts."""
    located = d.located
    # Imported here: it pulls in llama-index, which `-f` on a client command (reading
    # the file for the control plane's address) does not need.
    from llama_mesh.launch.service_builder import build_service
    from llama_mesh.worker.loader import WorkflowLoadError

    problems = []
    for name in d.service_ids():
        service = d.services.get(name)
        env = service.env if service is not None else {}
        if service is None:
            where: tuple[str, ...] = ("models",) if name == AGENTS_SERVICE else ("orchestrator",)
        elif service.source is not None:
            where = ("services", name, "source")
        else:
            field = "model" if service.model else ("tools" if service.tools else "kind")
            where = ("services", name, field)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            # What a module prints as it is imported goes to stderr: stdout is the
            # command's own (`up -o json`, `check -o json` print JSON there).
            with contextlib.redirect_stdout(sys.stderr):
                build_service(d, name)
        except WorkflowLoadError as err:
            problems.append(f"{at(located, where)}: {err}")
        except Exception as err:  # user code raised while importing
            problems.append(
                f"{at(located, where)}: building service {name!r} raised "
                f"{type(err).__name__}: {err}"
            )
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    if problems:
        raise DeploymentError(path, problems)
