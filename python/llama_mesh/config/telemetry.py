"""How the mesh's processes log, and where they send traces.

    LoggingConfig(level="debug", format="json")
    OtelConfig(endpoint="http://127.0.0.1:4317")

The deployment file's ``logging:`` section: every component's level (`up` gives each
child ``--log-level`` and asks for JSON lines, ``--log-format json``), and what `up`
shows on its terminal. Its ``otel:`` section: the OTLP collector every process exports
its spans to. docs/operations.md explains both.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import ByteSize, Field, field_validator

from llama_mesh.config.fields import DefaultText, Settings

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]


class LoggingConfig(Settings):
    """How the components log: `up` collects every line (``llama-mesh logs`` shows
    them) and shows the more severe ones on its terminal."""

    level: Annotated[
        LogLevel,
        Field(description="Least severe level the components log: debug, info, warning or error."),
    ] = "info"
    components: Annotated[
        dict[str, LogLevel],
        Field(
            description="A level of its own per component: `nats`, `control_plane`, "
            "`gateway` or a service id, e.g. `{echo: debug}`."
        ),
    ] = Field(default_factory=dict)
    terminal_level: Annotated[
        LogLevel,
        Field(description="Least severe level `up` shows on its terminal (it keeps them all)."),
    ] = "warning"
    format: Annotated[
        LogFormat,
        Field(description="How `up` shows them: `text` for people, `json` one object a line."),
    ] = "text"
    max_file_size: Annotated[
        ByteSize,
        DefaultText("`10MiB`"),
        Field(
            ge=4096,
            description="Size at which `up` starts a new file of the lines it keeps "
            "(`<state_dir>/logs/up.jsonl`; the one before becomes `up.1.jsonl`), e.g. "
            "`512KiB`, `50MB` or bytes (at least 4096).",
        ),
    ] = ByteSize(10 * 1024 * 1024)
    max_files: Annotated[
        int,
        Field(
            ge=1,
            le=100,
            description="Older files kept besides `up.jsonl` (`up.1.jsonl` … `up.N.jsonl`, "
            "the previous run's included); at most (N + 1) times `max_file_size` on disk.",
        ),
    ] = 5

    def level_of(self, component: str) -> LogLevel:
        return self.components.get(component, self.level)


OtlpProtocol = Literal["grpc", "http/protobuf"]


class OtelConfig(Settings):
    """OpenTelemetry traces, exported over OTLP to a collector (docs/operations.md).

    `up` gives every process it starts the standard ``OTEL_*`` variables these
    settings stand for (``environment``); without an endpoint it gives none, and the
    ``OTEL_*`` variables of its own environment apply (none: nothing is traced).
    """

    endpoint: Annotated[
        str | None,
        DefaultText("none: the `OTEL_*` variables, else no traces"),
        Field(
            description="The OTLP collector, e.g. `http://127.0.0.1:4317` (gRPC) or "
            "`http://127.0.0.1:4318` (HTTP); `https://` for TLS."
        ),
    ] = None
    protocol: Annotated[
        OtlpProtocol,
        Field(description="`grpc` or `http/protobuf`, as the collector speaks OTLP."),
    ] = "grpc"
    headers: Annotated[
        dict[str, str],
        Field(description="Headers sent with every export (an API key, e.g.)."),
    ] = Field(default_factory=dict)
    service_name_prefix: Annotated[
        str,
        Field(
            description="Each process's `service.name` is this and its component: "
            "`control-plane`, `gateway` or the service id."
        ),
    ] = "llama-mesh-"
    sample_ratio: Annotated[
        float,
        Field(
            ge=0,
            le=1,
            description="Share of new traces recorded (0-1); a call that comes with a "
            "sampled trace is always recorded.",
        ),
    ] = 1.0

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    def environment(self, component: str) -> dict[str, str]:
        """The OTEL_* variables of one process (`component`: its service.name suffix)."""
        if self.endpoint is None:
            return {}
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": self.protocol,
            "OTEL_EXPORTER_OTLP_HEADERS": ",".join(
                f"{quote(k)}={quote(v)}" for k, v in self.headers.items()
            ),
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": repr(self.sample_ratio),
            "OTEL_SERVICE_NAME": f"{self.service_name_prefix}{component}",
        }
