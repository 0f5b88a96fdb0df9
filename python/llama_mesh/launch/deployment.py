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
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from llama_mesh.core.names import SERVICE_ID

SOURCE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
NATS_URL = re.compile(r"(nats|tls|ws|wss)://[^\s/]+")
PREFIX = re.compile(r"[a-z][a-z0-9_]{0,31}")
ANY_HOST = ("0.0.0.0", "::", "")

Port = Annotated[int, Field(ge=0, le=65535)]


class DeploymentError(ValueError):
    """The deployment file is missing, is not YAML, or does not validate."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid deployment file {path}:\n{lines}")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NatsSpec(_Spec):
    """Where the mesh's NATS JetStream is: embedded (default) or an existing cluster."""

    url: str | list[str] | None = None
    data_dir: Path | None = None
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=-1, le=65535)] = -1
    credentials: Path | None = None
    prefix: str = "mesh"
    replicas: Annotated[int, Field(ge=1, le=5)] = 1

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        urls = [value] if isinstance(value, str) else value or []
        if isinstance(value, list) and not value:
            raise ValueError("give at least one URL, or leave url out for embedded NATS")
        for url in urls:
            if not NATS_URL.fullmatch(url):
                raise ValueError(
                    f"{url!r} is not a NATS URL: expected nats://HOST:PORT (or tls://, ws://)"
                )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not PREFIX.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid prefix: 1-32 characters of a-z, 0-9 and '_', "
                "starting with a letter"
            )
        return value

    @property
    def embedded(self) -> bool:
        """True when `up` starts its own nats-server."""
        return self.url is None

    @property
    def urls(self) -> list[str]:
        if self.url is None:
            return []
        return [self.url] if isinstance(self.url, str) else list(self.url)


class ControlPlaneSpec(_Spec):
    """Where the control plane listens (gRPC)."""

    host: str = "127.0.0.1"
    port: Port = 50051

    @property
    def address(self) -> str:
        return f"{connect_host(self.host)}:{self.port}"


class GatewaySpec(_Spec):
    """The REST/JSON gateway in front of the control plane."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 8080
    cors_origins: list[str] = Field(default_factory=list)


class RetrySpec(_Spec):
    """How failed attempts of the service's tasks are retried."""

    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    initial_backoff: Annotated[float, Field(gt=0)] = 1.0
    max_backoff: Annotated[float, Field(gt=0)] = 30.0
    retryable_error_types: list[str] = Field(default_factory=list)


class ServiceSpec(_Spec):
    """One workflow service and how many replicas of it run."""

    source: str
    path: Path | None = None
    description: str | None = None
    replicas: Annotated[int, Field(ge=1, le=64)] = 1
    max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 16
    retry: RetrySpec = Field(default_factory=RetrySpec)
    timeout: Annotated[float, Field(gt=0)] | None = None
    ack_wait: Annotated[float, Field(gt=0)] = 30.0
    port: Port = 0
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not SOURCE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a workflow reference: expected 'module:attribute' "
                "(e.g. 'workflows:echo'), where module is importable from `path`"
            )
        return value

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


class Deployment(_Spec):
    """A deployment: NATS, a control plane, a gateway and services."""

    name: str
    state_dir: Path = Path(".llama-mesh")
    nats: NatsSpec = Field(default_factory=NatsSpec)
    control_plane: ControlPlaneSpec = Field(default_factory=ControlPlaneSpec)
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    services: dict[str, ServiceSpec] = Field(default_factory=dict)
    # Where the file is; relative paths resolve against it. Set by parse_deployment,
    # with the file's YAML tree (to name lines in later errors).
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _yaml: yaml.Node | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid deployment name: 1-63 characters of a-z, 0-9, "
                "'_' and '-', starting with a letter or digit"
            )
        return value

    @field_validator("services")
    @classmethod
    def _service_ids(cls, value: dict[str, ServiceSpec]) -> dict[str, ServiceSpec]:
        for service_id in value:
            if not SERVICE_ID.fullmatch(service_id):
                raise ValueError(
                    f"{service_id!r} is not a valid service id: 1-63 characters of a-z, "
                    "0-9, '_' and '-', starting with a letter or digit"
                )
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
        return self.state_path / "nats"

    @property
    def run_file(self) -> Path:
        """Where `up` records the addresses it bound while it runs."""
        return self.state_path / "run.json"

    def service_path(self, service: ServiceSpec) -> Path:
        return self.resolve(service.path) if service.path is not None else self.base_dir


def connect_host(host: str) -> str:
    """The address to connect to for a server that listens on `host`."""
    return "127.0.0.1" if host in ANY_HOST else host


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


def _describe(located: _Located, error: Any) -> str:
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
    message: str = error["msg"]
    message = message.removeprefix("Value error, ")
    if "input" in error and kind not in ("value_error",) and not isinstance(error["input"], dict):
        message = f"{message} (got {error['input']!r})"
    return f"{_at(located, loc)}: {message}"


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
    if d.gateway.enabled and d.gateway.port:
        yield ("gateway", "port"), d.gateway.host, d.gateway.port
    for name, service in d.services.items():
        if service.port:
            yield ("services", name, "port"), "127.0.0.1", service.port


def _cross_checks(d: Deployment) -> Iterator[tuple[tuple[str, ...], str]]:
    seen: dict[int, tuple[str, ...]] = {}
    for loc, _, port in _fixed_ports(d):
        if port in seen:
            yield loc, f"port {port} is also {_dotted(seen[port])}: every server needs its own port"
        else:
            seen[port] = loc
    for name, service in d.services.items():
        if service.port and service.replicas > 1:
            yield (
                ("services", name, "port"),
                f"a fixed port serves one replica, not {service.replicas}: use port 0",
            )
        if service.retry.max_backoff < service.retry.initial_backoff:
            yield (
                ("services", name, "retry", "max_backoff"),
                "must be at least retry.initial_backoff",
            )
        if service.path is not None and not d.service_path(service).is_dir():
            yield (("services", name, "path"), f"{d.service_path(service)} is not a directory")
    if not d.nats.embedded and d.nats.data_dir is not None:
        yield ("nats", "data_dir"), "applies only to embedded NATS; remove it or remove 'url'"
    if d.nats.credentials is not None and not d.resolve(d.nats.credentials).is_file():
        yield ("nats", "credentials"), f"{d.resolve(d.nats.credentials)} is not a file"


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
