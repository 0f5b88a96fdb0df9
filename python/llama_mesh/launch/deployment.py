"""The deployment file: what `llama-mesh up` runs, validated before anything starts.

    deployment = load_deployment(Path("examples/quickstart/deployment.yaml"))
    for name, service in deployment.services.items():
        print(name, service.source, service.replicas)

A file that does not validate raises DeploymentError with one line per problem, each
naming the field (``services.echo.replicas``), its line in the file, and what would be
valid. Relative paths in the file are relative to the file's directory. docs/deployment.md
documents every field.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator
from pydantic_core import ErrorDetails

from llama_mesh.config import (
    STATE_DIR,
    ControlPlaneConfig,
    DefaultText,
    GatewayConfig,
    NatsConfig,
    SecurityConfig,
    ServiceSettings,
    Settings,
    default_data_dir,
    valid_service_id,
)
from llama_mesh.config.fields import matching, problem
from llama_mesh.config.restarts import RestartConfig
from llama_mesh.rpc.server import is_loopback

SOURCE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class DeploymentError(ValueError):
    """The deployment file is missing, is not YAML, or does not validate."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid deployment file {path}:\n{lines}")


class _Source(Settings):
    """Where a service's workflow comes from (first in the file's service section)."""

    source: Annotated[
        str,
        matching(
            SOURCE,
            "a workflow reference",
            "expected 'module:attribute' (e.g. 'workflows:echo'), where module is "
            "importable from `path`",
        ),
        Field(
            description="`module:attribute`: a Workflow instance, a Workflow subclass (made "
            "with no arguments) or a function returning a Workflow."
        ),
    ]
    path: Annotated[
        Path | None,
        DefaultText("the file's directory"),
        Field(description="Directory added to the import path before importing `module`."),
    ] = None


class ServiceSpec(ServiceSettings, _Source):
    """One service of the file: its workflow, how it is served (ServiceSettings: the
    same settings as ServiceConfig, the id being the key in ``services``), and how
    many replicas of it run with which environment."""

    replicas: Annotated[
        int,
        Field(
            ge=1,
            le=64,
            description="Processes serving it (1-64). They share one durable JetStream consumer.",
        ),
    ] = 1
    env: Annotated[
        dict[str, str],
        Field(
            description="Environment variables of its replicas (values become strings). "
            "Also set while `up`/`check` import the workflow."
        ),
    ] = Field(default_factory=dict)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in value.items()
                if v is not None
            }
        return value


class Deployment(Settings):
    """A deployment: NATS, a control plane, a gateway and services."""

    name: Annotated[
        str,
        matching(
            NAME,
            "a valid deployment name",
            "1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit",
        ),
        Field(
            description="The deployment's name: 1-63 of `a-z 0-9 _ -`, starting with a "
            "letter or digit."
        ),
    ]
    state_dir: Annotated[
        Path,
        Field(
            description="Where `up` keeps its run file (`run.json`: the addresses it bound, "
            "removed on exit) and, by default, the embedded NATS data."
        ),
    ] = STATE_DIR
    nats: Annotated[NatsConfig, DefaultText("embedded"), Field(description="See below.")] = Field(
        default_factory=NatsConfig
    )
    control_plane: Annotated[
        ControlPlaneConfig, DefaultText("`127.0.0.1:50051`"), Field(description="See below.")
    ] = Field(default_factory=ControlPlaneConfig)
    gateway: Annotated[
        GatewayConfig,
        DefaultText("enabled on `127.0.0.1:8080`"),
        Field(description="See below."),
    ] = Field(default_factory=GatewayConfig)
    security: Annotated[
        SecurityConfig,
        DefaultText("API keys on, no TLS"),
        Field(description="See below and docs/security.md."),
    ] = Field(default_factory=SecurityConfig)
    services: Annotated[
        dict[str, ServiceSpec],
        Field(
            description="Service id → service. Ids are what clients run "
            "(`llama-mesh run echo`): 1-63 of `a-z 0-9 _ -`."
        ),
    ] = Field(default_factory=dict)
    restarts: Annotated[
        RestartConfig,
        DefaultText("3 within 300 s"),
        Field(description="How `up` restarts a process that dies. See below."),
    ] = Field(default_factory=RestartConfig)
    # Where the file is; relative paths resolve against it. Set by parse_deployment,
    # with the file's YAML tree (to name lines in later errors).
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _yaml: yaml.Node | None = PrivateAttr(default=None)

    @field_validator("services")
    @classmethod
    def _service_ids(cls, value: dict[str, ServiceSpec]) -> dict[str, ServiceSpec]:
        for service_id in value:
            valid_service_id(service_id, "service id")
        return value

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def resolve(self, path: Path) -> Path:
        """A path of the file, made absolute against the file's directory."""
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def state_path(self) -> Path:
        return self.resolve(self.state_dir)

    @property
    def nats_data_dir(self) -> Path:
        if self.nats.data_dir is not None:
            return self.resolve(self.nats.data_dir)
        return default_data_dir(self.state_path)

    @property
    def run_file(self) -> Path:
        """Where `up` records the addresses it bound while it runs."""
        return self.state_path / "run.json"

    def service_path(self, service: ServiceSpec) -> Path:
        return self.resolve(service.path) if service.path is not None else self.base_dir


# ---------------------------------------------------------------- loading


@dataclass(frozen=True)
class _Located:
    """The parsed YAML tree, to find the line of a field for error messages."""

    root: yaml.Node | None

    def line(self, loc: Sequence[int | str]) -> int | None:
        node = self.root
        found = node
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == part:
                        found, node = (key if part == loc[-1] else value), value
                        break
                else:
                    break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    break
                node = found = node.value[part]
            else:
                break
        return None if found is None else found.start_mark.line + 1


def _fields(loc: Sequence[int | str]) -> list[str] | None:
    """The field names valid at `loc` (a path into Deployment), if it is a model."""
    current: Any = Deployment
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            if not isinstance(part, str) or part not in current.model_fields:
                return None
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
        if typing.get_origin(current) in (typing.Union, types.UnionType):
            models = [a for a in typing.get_args(current) if isinstance(a, type)]
            current = next((a for a in models if issubclass(a, BaseModel)), current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _at(located: _Located, loc: Sequence[int | str]) -> str:
    line = located.line(loc)
    return f"{_dotted(loc)} (line {line})" if line is not None else _dotted(loc)


def _describe(located: _Located, error: ErrorDetails) -> str:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _fields(loc[:-1]) or []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (
            f"{_at(located, loc)}: unknown field {loc[-1]!r}{hint}; "
            f"valid fields here: {', '.join(valid)}"
        )
    if kind == "missing":
        return f"{_at(located, loc[:-1]) if loc[:-1] else 'the file'}: {loc[-1]!r} is required"
    return f"{_at(located, loc)}: {problem(error)}"


def load_deployment(path: Path | str) -> Deployment:
    """Read and validate a deployment file; DeploymentError names every problem.

    >>> load_deployment("examples/quickstart/deployment.yaml").name  # doctest: +SKIP
    'quickstart'
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DeploymentError(path, [f"cannot read the file: {err.strerror or err}"]) from None
    return parse_deployment(text, path)


def parse_deployment(text: str, path: Path) -> Deployment:
    """Validate deployment YAML `text`; `path` names the file in errors and anchors paths."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise DeploymentError(path, [f"not valid YAML{where}: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DeploymentError(path, ["the file must be a mapping with at least 'name:'"])
    located = _Located(root)
    try:
        deployment = Deployment.model_validate(data)
    except ValidationError as err:
        problems = [_describe(located, e) for e in err.errors(include_url=False)]
        raise DeploymentError(path, problems) from None
    deployment._base_dir = path.resolve().parent
    deployment._yaml = root
    problems = [f"{_at(located, loc)}: {message}" for loc, message in _cross_checks(deployment)]
    if problems:
        raise DeploymentError(path, problems)
    return deployment


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


def _cross_checks(d: Deployment) -> Iterator[tuple[tuple[str, ...], str]]:
    seen: dict[int, tuple[str, ...]] = {}
    for loc, _, port in _fixed_ports(d):
        if port in seen:
            yield loc, f"port {port} is also {_dotted(seen[port])}: every server needs its own port"
        else:
            seen[port] = loc
    for name, service in d.services.items():
        for field in ("port", "metrics_port"):
            if getattr(service, field) and service.replicas > 1:
                yield (
                    ("services", name, field),
                    f"a fixed port serves one replica, not {service.replicas}: use {field} 0",
                )
        if service.path is not None and not d.service_path(service).is_dir():
            yield (("services", name, "path"), f"{d.service_path(service)} is not a directory")
    if not d.nats.embedded and d.nats.data_dir is not None:
        yield ("nats", "data_dir"), "applies only to embedded NATS; remove it or remove 'url'"
    if d.nats.credentials is not None and not d.resolve(d.nats.credentials).is_file():
        yield ("nats", "credentials"), f"{d.resolve(d.nats.credentials)} is not a file"
    yield from _security_checks(d)


def _security_checks(d: Deployment) -> Iterator[tuple[tuple[str, ...], str]]:
    security = d.security
    if security.install_keys is not None:
        yield ("security", "install_keys"), "`up` makes and installs the keys itself: remove it"
    if security.tls and security.tls_client_ca is None:
        yield (
            ("security", "tls_client_ca"),
            "`up` gives its components mTLS: name the CA that signed tls_cert (and their "
            "client certificates) here",
        )
    servers: list[tuple[tuple[str, ...], str]] = [(("control_plane", "host"), d.control_plane.host)]
    servers += [(("services", n, "host"), s.host) for n, s in d.services.items()]
    if d.gateway.enabled:
        servers.append((("gateway", "host"), d.gateway.host))
    for loc, host in servers:
        if not is_loopback(host) and not (security.auth and security.tls):
            yield (
                loc,
                f"listening on {host} without TLS and authentication lets anyone who can "
                "reach it call every RPC: set security.tls_cert, tls_key and tls_client_ca and "
                "keep security.auth on, or listen on 127.0.0.1 (docs/security.md)",
            )


def check_ports_free(d: Deployment) -> list[str]:
    """Fixed ports of the deployment that another process holds already."""
    busy = []
    for loc, host, port in _fixed_ports(d):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as err:
                busy.append(f"{_dotted(loc)}: {host}:{port} is not free ({err.strerror})")
    return busy


def check_workflows(d: Deployment, path: Path) -> None:
    """Import every service's workflow (with its env) so a bad source fails before start."""
    located = _Located(d._yaml)
    # Imported here: it pulls in llama-index workflows, which `-f` on a client command
    # (reading the file for the control plane's address) does not need.
    from llama_mesh.worker.loader import WorkflowLoadError, load_workflow

    problems = []
    for name, service in d.services.items():
        saved = {k: os.environ.get(k) for k in service.env}
        os.environ.update(service.env)
        try:
            load_workflow(service.source, d.service_path(service))
        except WorkflowLoadError as err:
            problems.append(f"{_at(located, ('services', name, 'source'))}: {err}")
        except Exception as err:  # user code raised while importing
            problems.append(
                f"{_at(located, ('services', name, 'source'))}: importing "
                f"{service.source!r} raised {type(err).__name__}: {err}"
            )
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    if problems:
        raise DeploymentError(path, problems)
