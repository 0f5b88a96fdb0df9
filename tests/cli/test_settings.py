"""One settings model per component: the `serve` options, the deployment file, the
arguments `up` gives its children, the llama_deploy-style configs and the docs are all
derived from it, so none of them can drop or change a setting on its own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from llama_mesh.cli import reference
from llama_mesh.config import (
    ControlPlaneConfig,
    GatewayConfig,
    NatsConfig,
    RetentionConfig,
    RetryConfig,
    SecurityConfig,
    ServiceConfig,
    ServiceSettings,
    Settings,
)
from llama_mesh.config.command_line import (
    CONTROL_PLANE_OPTIONS,
    GATEWAY_OPTIONS,
    NATS_OPTIONS,
    SERVICE_OPTIONS,
    Option,
    from_values,
    options,
    to_argv,
)
from llama_mesh.launch import child_specs
from llama_mesh.launch.deploy import WorkflowServiceConfig
from llama_mesh.launch.deployment import ServiceSpec, parse_deployment

from .conftest import QUICKSTART, cli, parse_command

# Every setting of a replica away from its default, so a setting that an option or
# the child's arguments dropped comes back different.
SERVICE = ServiceConfig(
    "echo",
    description="says it back",
    kind="agent",
    max_concurrency=3,
    retry=RetryConfig(
        max_attempts=7,
        initial_backoff=0.25,
        max_backoff=9.5,
        backoff_multiplier=3.0,
        retryable_error_types=["TimeoutError", "ConnectionError"],
    ),
    timeout=12.5,
    tracebacks=False,
    ack_wait=4.0,
    lease=20.0,
    host="0.0.0.0",
    port=9123,
    metrics_port=9124,
)
NATS = NatsConfig(
    data_dir=Path("/data/nats"),
    host="0.0.0.0",
    port=4333,
    credentials=Path("/secrets/mesh.creds"),
    nkey_seed=Path("/secrets/component.nk"),
    tls_ca=Path("/secrets/nats-ca.pem"),
    tls_cert=Path("/secrets/nats-client.pem"),
    tls_key=Path("/secrets/nats-client.key"),
    server_config=Path("/secrets/nats-server.conf"),
    prefix="other",
    replicas=3,
)
CONTROL_PLANE = ControlPlaneConfig(
    host="0.0.0.0",
    port=6000,
    metrics_port=6001,
    retention=RetentionConfig(finished_task_ttl=3600, idle_session_ttl=7200),
)
GATEWAY = GatewayConfig(
    host="0.0.0.0",
    port=8181,
    cors_origins=["http://a", "http://b"],
    metrics=False,
    tls_cert=Path("/secrets/https.pem"),
    tls_key=Path("/secrets/https.key"),
    upstream_ca=Path("/secrets/ca.pem"),
    upstream_cert=Path("/secrets/gateway.pem"),
    upstream_key=Path("/secrets/gateway.key"),
    upstream_server_name="control-plane.internal",
)
SECURITY = SecurityConfig(
    auth=True,  # `serve` defaults to off
    install_keys=Path("/secrets/keys.json"),
    tls_cert=Path("/secrets/server.pem"),
    tls_key=Path("/secrets/server.key"),
    tls_client_ca=Path("/secrets/ca.pem"),
    jwt_issuer="https://id.example",
    jwt_audience="mesh",
    jwt_jwks_url="https://id.example/jwks",
    jwt_roles_claim="groups",
    jwt_refetch_interval=1.0,
    open_health=False,
    open_reflection=False,
    open_metrics=True,
)


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out |= _leaves(annotation, (*prefix, name))
        else:
            out.add((*prefix, name))
    return out


def _value(settings: BaseModel, option: Option) -> Any:
    value: Any = settings.model_dump(mode="json")
    for part in option.path:
        value = value[part]
    return value


def test_every_service_setting_is_an_option_and_the_examples_leave_no_default() -> None:
    service_options = [o for o in SERVICE_OPTIONS if o.model is ServiceConfig]
    assert {o.path for o in service_options} == _leaves(ServiceConfig)
    for option, settings in [
        *((o, SERVICE) for o in service_options),
        *((o, NATS) for o in NATS_OPTIONS + CONTROL_PLANE_OPTIONS if o.model is NatsConfig),
        *((o, CONTROL_PLANE) for o in CONTROL_PLANE_OPTIONS if o.model is ControlPlaneConfig),
        *((o, GATEWAY) for o in GATEWAY_OPTIONS if o.model is GatewayConfig),
        *((o, SECURITY) for o in GATEWAY_OPTIONS if o.model is SecurityConfig),
        *((o, SECURITY) for o in CONTROL_PLANE_OPTIONS if o.model is SecurityConfig),
    ]:
        assert _value(settings, option) != option.default, option.flag


@pytest.mark.parametrize(
    ("command", "opts", "settings"),
    [
        (["serve", "service", "quickstart:echo"], SERVICE_OPTIONS, [SERVICE, NATS, SECURITY]),
        (
            ["serve", "control-plane", "--nats", "nats://n:4222"],
            CONTROL_PLANE_OPTIONS,
            [CONTROL_PLANE, NATS, SECURITY],
        ),
        (
            ["serve", "gateway", "--upstream", "cp:50051"],
            GATEWAY_OPTIONS,
            [GATEWAY, SECURITY],
        ),
        (["serve", "nats"], NATS_OPTIONS, [NATS]),
    ],
    ids=["service", "control-plane", "gateway", "nats"],
)
def test_the_arguments_of_settings_parse_back_to_the_same_settings(
    command: list[str], opts: list[Option], settings: list[Settings]
) -> None:
    _, params = parse_command([*command, *to_argv(opts, *settings)])
    for expected in settings:
        parsed = from_values(type(expected), opts, params)
        fields = {o.path[0] for o in opts if o.model is type(expected)}
        assert parsed.model_dump(include=fields) == expected.model_dump(include=fields)


def test_up_starts_each_replica_with_the_settings_of_the_file(tmp_path: Path) -> None:
    text = f"""\
name: demo
nats:
  credentials: mesh.creds
  prefix: other
services:
  echo:
    source: quickstart:echo
    path: {QUICKSTART}
    kind: agent
    max_concurrency: 3
    retry: {{max_attempts: 7, initial_backoff: 0.25, retryable_error_types: [KeyError]}}
    timeout: 12.5
    lease: 20
    port: 9123
"""
    (tmp_path / "mesh.creds").write_text("")
    d = parse_deployment(text, tmp_path / "deployment.yaml")
    [child] = child_specs.service_specs(d, "echo", d.services["echo"], "127.0.0.1:7000")
    name, params = parse_command(child.argv[3:])  # after `python -m llama_mesh`
    assert name == "serve service"
    assert params["workflow"] == "quickstart:echo" and params["path"] == QUICKSTART
    assert from_values(ServiceConfig, SERVICE_OPTIONS, params) == d.services["echo"].named("echo")
    assert from_values(NatsConfig, SERVICE_OPTIONS, params).credentials == tmp_path / "mesh.creds"

    _, params = parse_command(child_specs.control_plane_spec(d, ["nats://n:4222"]).argv[3:])
    assert params["nats"] == ["nats://n:4222"]
    assert from_values(NatsConfig, CONTROL_PLANE_OPTIONS, params).prefix == "other"
    assert from_values(ControlPlaneConfig, CONTROL_PLANE_OPTIONS, params) == d.control_plane


def test_the_file_takes_every_service_setting_and_the_python_configs_its_defaults() -> None:
    assert issubclass(ServiceSpec, ServiceSettings)
    assert WorkflowServiceConfig("echo").service_config() == ServiceConfig("echo")


def test_a_new_setting_is_one_line() -> None:
    class Extended(ServiceConfig):
        warmup: int = 7

    [option] = [o for o in options(Extended) if o.path == ("warmup",)]
    assert (option.flag, option.default) == ("--warmup", 7)
    assert "--warmup" in to_argv(options(Extended), Extended(name="echo", warmup=9))


async def test_a_bad_option_names_itself_and_what_is_valid() -> None:
    result = await cli(
        "serve", "service", "quickstart:echo", "--name", "echo", "--path", str(QUICKSTART),
        "--max-attempts", "0", "--kind", "robot",
    )  # fmt: skip
    assert result.code == 2
    assert "--max-attempts: Input should be greater than or equal to 1 (got 0)" in result.stderr
    assert "--kind: 'robot' is not a service kind: use one of workflow, agent" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["control-plane", "service", "gateway", "nats"])
async def test_every_option_of_serve_shows_a_plain_type(command: str) -> None:
    """A constrained setting (a port: `Annotated[int, Field(ge=0, le=65535)] | None`)
    shows `<int>` in `--help`, not the repr of its annotation."""
    result = await cli("serve", command, "--help", env={"COLUMNS": "200"})
    assert result.code == 0, result.stderr
    shown = dict(re.findall(r"(--[\w-]+)(?: +--no-[\w-]+)? +(<[^>\n]*>?)", result.stdout))
    assert shown["--log-level"] == "<debug|info|warning|error>"
    assert {s for s in shown.values() if not re.fullmatch(r"<[\w|\[\]]+>", s)} == set(), shown


def test_the_settings_tables_in_the_docs_are_generated_from_the_models() -> None:
    names = set()
    for path in (reference.DOCS / name for name in ("deployment.md", "cli.md", "security.md")):
        text = path.read_text(encoding="utf-8")
        assert reference.rendered(text) == text, f"{path} is out of date: run `make docs`"
        names |= set(re.findall(r"<!-- settings: (\S+) -->", text))
    assert names == set(reference.TABLES)


def test_a_table_shows_a_new_setting() -> None:
    class Extended(NatsConfig):
        warmup: int = 7

    assert "| `warmup` | `7` |" in reference.model_table(Extended)
