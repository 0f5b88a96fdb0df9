"""How a service is served: its id, concurrency, retry policy, timeouts and addresses.

    ServiceConfig("echo", max_concurrency=32, retry=RetryConfig(max_attempts=5))

The deployment file's ``services.<id>`` section, the ``serve service`` flags,
``deploy_workflow``'s WorkflowServiceConfig and the arguments `up` gives each replica
are derived from these models; every default is written here once.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, ValidationInfo, field_validator

from llama_mesh.config.fields import DefaultText, Flag, Port, Settings
from llama_mesh.core.attempt_policy import (
    DEFAULT_BACKOFF_MULTIPLIER,
    DEFAULT_INITIAL_BACKOFF,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF,
    Retries,
)
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.names import check_service_id
from llama_mesh.v1 import resources_pb2

_KIND_PREFIX = "SERVICE_KIND_"


# Names the deployment file also accepts for a kind.
_KIND_ALIASES = {"tools": "tool"}


def _kind(value: Any) -> Any:
    """A kind given by name ("agent", "tools") or as the proto enum's value."""
    if isinstance(value, str):
        try:
            name = _KIND_ALIASES.get(value.lower(), value)
            return resources_pb2.ServiceKind.Value(_KIND_PREFIX + name.upper())
        except ValueError:
            valid = ", ".join(_kind_name(v) for v in resources_pb2.ServiceKind.values() if v)
            raise ValueError(f"{value!r} is not a service kind: use one of {valid}") from None
    return value


def _kind_name(value: int) -> str:
    return resources_pb2.ServiceKind.Name(value).removeprefix(_KIND_PREFIX).lower()  # type: ignore[arg-type]


Kind = Annotated[
    resources_pb2.ServiceKind.ValueType,
    BeforeValidator(_kind),
    PlainSerializer(_kind_name, return_type=str),
]


class RetryConfig(Settings):
    """How failed attempts of the service's tasks are retried."""

    max_attempts: Annotated[
        int, Field(ge=1, le=100, description="Attempts in all, including the first (1-100).")
    ] = DEFAULT_MAX_ATTEMPTS
    initial_backoff: Annotated[
        float, Field(gt=0, description="Seconds before the second attempt.")
    ] = DEFAULT_INITIAL_BACKOFF
    max_backoff: Annotated[
        float,
        Field(gt=0, description="Longest delay between attempts (at least `initial_backoff`)."),
    ] = DEFAULT_MAX_BACKOFF
    backoff_multiplier: Annotated[
        float, Field(ge=1, description="Each delay is the one before times this.")
    ] = DEFAULT_BACKOFF_MULTIPLIER
    retryable_error_types: Annotated[
        list[str],
        Flag("--retryable-error-type"),
        Field(description="Exception type names retried besides `llama_mesh.RetryableError`."),
    ] = Field(default_factory=list)

    @field_validator("max_backoff")
    @classmethod
    def _max_backoff(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("initial_backoff")
        if initial is not None and value < initial:
            raise ValueError(f"must be at least initial_backoff ({initial})")
        return value

    def to_proto(self) -> resources_pb2.RetryPolicy:
        return Retries(
            self.max_attempts,
            self.initial_backoff,
            self.max_backoff,
            self.backoff_multiplier,
            tuple(self.retryable_error_types),
        ).to_proto()


class ServiceSettings(Settings):
    """Everything about serving a service but its id (the deployment file's key)."""

    description: Annotated[
        str | None,
        DefaultText("the workflow's docstring"),
        Field(description="Shown by `status` and `ListServices`."),
    ] = None
    kind: Annotated[
        Kind,
        Field(
            description="What the service is: workflow, agent, tools (a tool service), "
            "human or orchestrator."
        ),
    ] = resources_pb2.SERVICE_KIND_WORKFLOW
    max_concurrency: Annotated[
        int, Field(ge=1, le=10_000, description="Tasks one replica runs at once (1-10000).")
    ] = 16
    retry: RetryConfig = Field(default_factory=RetryConfig)
    timeout: Annotated[
        float | None, Field(gt=0, description="Default task timeout in seconds.")
    ] = None
    tracebacks: Annotated[
        bool,
        Field(
            description="A failed task's error carries the workflow's traceback "
            "(google.rpc.DebugInfo: its frames and exception chain). Off, only the "
            "exception's type and message."
        ),
    ] = True
    ack_wait: Annotated[
        float,
        Field(
            gt=0,
            description="Seconds after which a task whose replica went silent is delivered "
            "to another.",
        ),
    ] = 30.0
    lease: Annotated[
        float,
        Field(
            gt=0,
            description="Seconds the control plane keeps a replica registered without a heartbeat.",
        ),
    ] = 60.0
    host: Annotated[str, Field(description="Listen address of the replica's Service API.")] = (
        "127.0.0.1"
    )
    port: Annotated[
        Port,
        Field(
            description="Service API port; `0` picks a free one (a fixed port serves one replica)."
        ),
    ] = 0
    metrics_port: Annotated[
        Port | None,
        Field(
            description="Serve Prometheus metrics at `http://HOST:PORT/metrics` (`0`: a free "
            "port, shown by `up`; a fixed port serves one replica): HTTPS with TLS on, to "
            "admins only with authentication on. None: no metrics endpoint."
        ),
    ] = None

    def retry_policy(self) -> resources_pb2.RetryPolicy:
        return self.retry.to_proto()

    def named(self, name: str) -> ServiceConfig:
        """These settings as the ServiceConfig of service `name`."""
        return ServiceConfig(name, **{f: getattr(self, f) for f in ServiceSettings.model_fields})


class ServiceConfig(ServiceSettings):
    """How a workflow is served.

    ``name`` is the service id clients run (``session.run("echo", ...)``); it may be
    given as the first positional argument: ``ServiceConfig("echo", max_concurrency=4)``.
    """

    name: Annotated[str, Field(description="Service id clients run.")]

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        super().__init__(**data)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return valid_service_id(value, "service name")


def valid_service_id(value: str, field: str = "service id") -> str:
    """`value` if it is a service id; else ValueError (a validation error in a model)."""
    try:
        return check_service_id(value, field)
    except InvalidArgumentError as err:
        raise ValueError(err.message) from None
