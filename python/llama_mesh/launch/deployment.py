"""The deployment file: what `llama-mesh up` runs, validated before anything starts.

    deployment = load_deployment(Path("examples/quickstart/deployment.yaml"))
    for name, service in deployment.services.items():
        print(name, service.source, service.replicas)

A file that does not validate raises DeploymentError with one line per problem, each
naming the field (``services.echo.replicas``), its line in the file, and what would be
valid. Relative paths in the file are relative to the file's directory. docs/deployment.md
documents every field. The sections below the top level are in service_specs.py, the
checks that need the whole file in deployment_checks.py.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator

from llama_mesh.config import (
    STATE_DIR,
    ControlPlaneConfig,
    DefaultText,
    GatewayConfig,
    LoggingConfig,
    NatsConfig,
    OtelConfig,
    SecurityConfig,
    Settings,
    default_data_dir,
    valid_service_id,
)
from llama_mesh.config.fields import matching
from llama_mesh.config.models import ModelConfig, ModelId
from llama_mesh.config.restarts import RestartConfig
from llama_mesh.core.names import AGENTS_SERVICE, ORCHESTRATOR_SERVICE
from llama_mesh.launch.certificates import LOOPBACK_NAMES, LocalPki
from llama_mesh.launch.deployment_checks import check_ports_free, check_workflows, cross_checks
from llama_mesh.launch.deployment_errors import DeploymentError, Located, at, describe
from llama_mesh.launch.service_specs import OrchestratorSpec, ServiceSpec, StepSpec

__all__ = [
    "Deployment",
    "DeploymentError",
    "OrchestratorSpec",
    "ServiceSpec",
    "StepSpec",
    "check_ports_free",
    "check_workflows",
    "load_deployment",
    "parse_deployment",
]

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


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
    models: Annotated[
        dict[ModelId, ModelConfig],
        Field(
            description="Model id → an OpenAI-compatible endpoint (see below). Agents name "
            "a model by its id."
        ),
    ] = Field(default_factory=dict)
    logging: Annotated[
        LoggingConfig,
        DefaultText("`info`, shown from `warning`"),
        Field(description="How the components log; `llama-mesh logs` shows it all. See below."),
    ] = Field(default_factory=LoggingConfig)
    otel: Annotated[
        OtelConfig,
        DefaultText("no traces"),
        Field(description="Where every process sends its traces (OTLP). See below."),
    ] = Field(default_factory=OtelConfig)
    services: Annotated[
        dict[str, ServiceSpec],
        Field(
            description="Service id → service. Ids are what clients run "
            "(`llama-mesh run echo`): 1-63 of `a-z 0-9 _ -`."
        ),
    ] = Field(default_factory=dict)
    orchestrator: Annotated[
        OrchestratorSpec,
        DefaultText("`simple`"),
        Field(description="What routes a task that names no service. See below."),
    ] = Field(default_factory=OrchestratorSpec)
    restarts: Annotated[
        RestartConfig,
        DefaultText("3 within 300 s"),
        Field(description="How `up` restarts a process that dies. See below."),
    ] = Field(default_factory=RestartConfig)
    # Where the file is; relative paths resolve against it. Set by parse_deployment,
    # with the file's YAML tree (to name lines in later errors).
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _file: Path | None = PrivateAttr(default=None)
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

    @property
    def file(self) -> Path | None:
        """The file it was read from (replicas that build their service read it too)."""
        return self._file

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
    def log_file(self) -> Path:
        """Where `up` keeps its children's log lines (JSON, one a line)."""
        return self.state_path / "logs" / "up.jsonl"

    @property
    def run_file(self) -> Path:
        """Where `up` records the addresses it bound while it runs."""
        return self.state_path / "run.json"

    @property
    def local_pki(self) -> LocalPki | None:
        """Where `up` keeps the CA and certificates it makes (`security.tls: auto`)."""
        return LocalPki(self.state_path / "tls") if self.security.tls == "auto" else None

    def tls_hosts(self) -> list[str]:
        """The names `tls: auto`'s server certificate carries: loopback, every host the
        file binds, and this machine's name for a wildcard (0.0.0.0) bind."""
        binds = [self.control_plane.host, self.gateway.host]
        binds += [s.host for s in self.services.values()]
        hosts = list(LOOPBACK_NAMES)
        for host in binds:
            name = socket.gethostname() if host in ("0.0.0.0", "::", "") else host.strip("[]")
            if name not in hosts:
                hosts.append(name)
        return hosts

    def component_tls(self) -> tuple[Path, Path, Path] | None:
        """(CA, client certificate, key) with which the mesh's components, and the
        operator's CLI, reach its servers over mTLS; None without TLS."""
        if (pki := self.local_pki) is not None:
            return pki.ca_cert, pki.client_cert, pki.client_key
        s = self.security
        if s.tls_client_ca is None or s.tls_cert is None or s.tls_key is None:
            return None
        # Files of the operator's own: the server certificate is the components' too.
        return self.resolve(s.tls_client_ca), self.resolve(s.tls_cert), self.resolve(s.tls_key)

    def service_path(self, service: ServiceSpec) -> Path:
        return self.resolve(service.path) if service.path is not None else self.base_dir

    @property
    def runs_agents_service(self) -> bool:
        """With `models:`, `up` runs the built-in agent service (AGENTS_SERVICE): the
        agents the Agents API creates and the Responses API's responses run there."""
        return bool(self.models) and AGENTS_SERVICE not in self.services

    def service_ids(self) -> list[str]:
        """Every service `up` runs (each has its token and nkey): the file's, the
        built-in agent service if the file has models, the orchestrator if it has one."""
        return [
            *self.services,
            *([AGENTS_SERVICE] if self.runs_agents_service else []),
            *([ORCHESTRATOR_SERVICE] if self.orchestrator.deployed else []),
        ]

    @property
    def located(self) -> Located:
        """The file's YAML tree, to name the line of a field in an error."""
        return Located(self._yaml)


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
    located = Located(root)
    try:
        deployment = Deployment.model_validate(data)
    except ValidationError as err:
        problems = [describe(located, Deployment, e) for e in err.errors(include_url=False)]
        raise DeploymentError(path, problems) from None
    deployment._base_dir = path.resolve().parent
    deployment._file = path.resolve()
    deployment._yaml = root
    problems = [f"{at(located, loc)}: {message}" for loc, message in cross_checks(deployment)]
    if problems:
        raise DeploymentError(path, problems)
    return deployment
