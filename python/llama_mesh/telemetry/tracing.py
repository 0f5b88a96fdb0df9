"""OpenTelemetry traces: one trace per task, across every process it touches.

Nothing is traced until a tracer provider is in use: ``configure_tracing`` makes one
that exports over OTLP when the standard ``OTEL_*`` variables ask for it (`up` sets
them from the deployment file's ``otel:`` section), and a test (or an application that
embeds the mesh) may use its own (``use_provider``; a provider set globally with
``opentelemetry.trace.set_tracer_provider`` counts too). ``enabled()`` is the cheap
check every instrumented place makes first: with no provider, a span costs one call
and nothing of the SDK is imported.

The trace context crosses processes as W3C trace context: in gRPC metadata (the
OpenTelemetry gRPC instrumentation's interceptors: ``server_interceptors``,
``client_interceptors``) and in NATS message headers (``inject`` / ``extract``).

    with exporting("control-plane"):  # OTLP, if the OTEL_* variables ask for it
        with span("context.load", **{"llama_mesh.task": name}):
            ...

docs/operations.md ("Traces") lists the spans and their attributes.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

TRACER = "llama_mesh"
SERVICE_NAME_PREFIX = "llama-mesh-"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
# Calls made every few seconds by every process (health checks, leases), and server
# reflection: a trace each would bury the tasks' traces.
_UNTRACED_METHOD = "/llama_mesh.v1.ControlPlaneAPI/RenewServiceLease"

# The provider this process traces to (see use_provider), and its tracer.
_provider: Any = None
_tracer: tuple[Any, Any] | None = None


def provider() -> Any:
    """The tracer provider in use: this module's, else a real global one; None if off."""
    if _provider is not None:
        return _provider
    api = sys.modules.get("opentelemetry.trace")
    if api is None:  # nobody imported OpenTelemetry, so nobody set a provider
        return None
    found = api.get_tracer_provider()
    if isinstance(found, api.ProxyTracerProvider | api.NoOpTracerProvider):
        return None
    return found


def enabled() -> bool:
    """Whether spans are recorded in this process."""
    return provider() is not None


@contextlib.contextmanager
def use_provider(tracer_provider: Any) -> Iterator[None]:
    """Trace to `tracer_provider` inside the block (servers and channels made inside
    it keep it): an in-memory exporter's in tests, for instance."""
    global _provider, _tracer
    previous, _provider, _tracer = _provider, tracer_provider, None
    try:
        yield
    finally:
        _provider, _tracer = previous, None


def tracer() -> Any:
    """The mesh's tracer from the provider in use (None when off)."""
    global _tracer
    current = provider()
    if current is None:
        return None
    if _tracer is None or _tracer[0] is not current:
        _tracer = (current, current.get_tracer(TRACER))
    return _tracer[1]


# ---------------------------------------------------------------- configuration


def configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard OTEL_* variables ask for traces exported over OTLP."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "otlp":
        return False
    return any(environ.get(v) for v in _ENDPOINT_VARIABLES)


def service_name(component: str) -> str:
    """The default ``service.name`` of a component (OTEL_SERVICE_NAME overrides it)."""
    return f"{SERVICE_NAME_PREFIX}{component}"


def configure_tracing(
    component: str, *, instance_id: str = "", environ: Mapping[str, str] = os.environ
) -> Callable[[], None] | None:
    """Trace this process to the OTLP collector the OTEL_* variables name, if they name
    one: the function that flushes and stops it, or None (nothing is traced).

    The resource's ``service.name`` is ``llama-mesh-<component>`` unless
    OTEL_SERVICE_NAME says otherwise; `instance_id` (a replica's id) is its
    ``service.instance.id``. The sampler, headers, timeouts and batching follow the
    OTEL_* variables as the SDK reads them.
    """
    if not configured(environ) or enabled():
        return None  # not asked for, or this process traces already (its first component)
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"llama_mesh.component": component}
    if not environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = service_name(component)
    if instance_id:
        attributes["service.instance.id"] = instance_id
    tracer_provider = TracerProvider(resource=Resource.create(attributes))
    tracer_provider.add_span_processor(BatchSpanProcessor(_exporter(environ)))
    trace.set_tracer_provider(tracer_provider)
    global _provider, _tracer
    _provider, _tracer = tracer_provider, None

    def shutdown() -> None:
        global _provider, _tracer
        tracer_provider.shutdown()  # exports what is left
        if _provider is tracer_provider:
            _provider, _tracer = None, None

    return shutdown


@contextlib.contextmanager
def exporting(component: str, *, instance_id: str = "") -> Iterator[None]:
    """``configure_tracing`` for the block; the spans not sent yet go out as it ends."""
    stop = configure_tracing(component, instance_id=instance_id)
    try:
        yield
    finally:
        if stop is not None:
            stop()


def _exporter(environ: Mapping[str, str]) -> Any:
    protocol = next((environ[v] for v in _PROTOCOL_VARIABLES if environ.get(v)), "grpc")
    if protocol.strip().lower().startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


# ---------------------------------------------------------------- across processes


def _traced_calls() -> Any:
    from opentelemetry.instrumentation.grpc import filters

    return filters.negate(
        filters.any_of(
            filters.health_check(),
            filters.service_prefix("grpc.reflection."),
            filters.full_method_name(_UNTRACED_METHOD),
        )
    )


def server_interceptors() -> list[Any]:
    """The gRPC server interceptors that continue a caller's trace ([] when off)."""
    current = provider()
    if current is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=current, filter_=_traced_calls())]  # type: ignore[no-untyped-call]


def client_interceptors() -> list[Any]:
    """The gRPC client interceptors that send the current trace along ([] when off)."""
    current = provider()
    if current is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=current, filter_=_traced_calls()))  # type: ignore[no-untyped-call]


def inject(headers: dict[str, str]) -> dict[str, str]:
    """`headers` (of a NATS message) with the current trace context added."""
    if enabled():
        from opentelemetry import propagate

        propagate.inject(headers)
    return headers


_TRACE_HEADERS = ("traceparent", "tracestate")


def trace_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The W3C trace context among a message's headers, for a process that continues
    the trace itself (a Queue API service in another language)."""
    if not headers:
        return {}
    return {k: headers[k] for k in _TRACE_HEADERS if k in headers}


def extract(headers: Mapping[str, str] | None) -> Any:
    """The trace context a NATS message's headers carry (None when off or absent)."""
    if not headers or not enabled():
        return None
    from opentelemetry import propagate

    return propagate.extract(headers)


# ---------------------------------------------------------------- spans


_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()


def span(
    name: str,
    *,
    parent: Any = None,
    kind: str = "INTERNAL",
    **attributes: str | int | float | bool,
) -> contextlib.AbstractContextManager[Any]:
    """A span around the block, current inside it (None, and nothing made, when
    tracing is off). `parent` is an extracted context (else the current span); `kind`
    a SpanKind name. An exception that leaves the block is recorded on it."""
    if not enabled():
        return _OFF
    from opentelemetry import trace

    return tracer().start_as_current_span(  # type: ignore[no-any-return]
        name, context=parent, kind=trace.SpanKind[kind], attributes=attributes
    )


def annotate(*, error: str = "", **attributes: str | int | float | bool) -> None:
    """Add `attributes` to the current span, and mark it failed when `error` says why
    (nothing when tracing is off)."""
    if not enabled():
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    current.set_attributes(attributes)
    if error:
        current.set_status(trace.Status(trace.StatusCode.ERROR, error))


def record_span(
    name: str,
    start_time: float,
    end_time: float,
    *,
    parent: Any = None,
    **attributes: str | int | float | bool,
) -> None:
    """A span that began and ended before now (epoch seconds): time spent queued."""
    if not enabled():
        return
    done = tracer().start_span(
        name, context=parent, attributes=attributes, start_time=int(start_time * 1e9)
    )
    done.end(end_time=int(max(end_time, start_time) * 1e9))
