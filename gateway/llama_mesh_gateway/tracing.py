"""The gateway's OpenTelemetry traces: a server span per HTTP request, continuing the
caller's W3C trace context (a `traceparent` header), and the upstream call as its
child, the context sent along in the gRPC metadata (the OpenTelemetry gRPC
instrumentation's client interceptors).

The gateway imports no llama_mesh code, so it sets itself up the same way on its own:
``configure_tracing`` exports over OTLP when the standard ``OTEL_*`` variables name an
endpoint (service.name ``llama-mesh-gateway`` unless OTEL_SERVICE_NAME says otherwise);
``use_provider`` traces to a provider of the caller's (an in-memory exporter's in
tests); a provider set globally counts too. With none, nothing is traced and a request
costs one check.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TRACER = "llama_mesh_gateway"
SERVICE_NAME = "llama-mesh-gateway"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")

_provider: Any = None


def provider() -> Any:
    """The tracer provider in use: this module's, else a real global one; None if off."""
    if _provider is not None:
        return _provider
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return None
    found = api.get_tracer_provider()
    if isinstance(found, api.ProxyTracerProvider | api.NoOpTracerProvider):
        return None
    return found


def enabled() -> bool:
    return provider() is not None


@contextlib.contextmanager
def use_provider(tracer_provider: Any) -> Iterator[None]:
    """Trace to `tracer_provider` inside the block (gateways made inside it keep it)."""
    global _provider
    previous, _provider = _provider, tracer_provider
    try:
        yield
    finally:
        _provider = previous


def configure_tracing(environ: Mapping[str, str] = os.environ) -> Callable[[], None] | None:
    """Export this process's spans over OTLP if the OTEL_* variables name an endpoint:
    the function that flushes and stops it, or None."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "otlp":
        return None
    if not any(environ.get(v) for v in _ENDPOINT_VARIABLES):
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"llama_mesh.component": "gateway"}
    if not environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = SERVICE_NAME
    protocol = next((environ[v] for v in _PROTOCOL_VARIABLES if environ.get(v)), "grpc")
    exporter: Any
    if protocol.strip().lower().startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        exporter = HttpExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    tracer_provider = TracerProvider(resource=Resource.create(attributes))
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    global _provider
    _provider = tracer_provider

    def shutdown() -> None:
        global _provider
        tracer_provider.shutdown()
        if _provider is tracer_provider:
            _provider = None

    return shutdown


def client_interceptors() -> list[Any]:
    """Interceptors of the upstream channel that send the trace along ([] when off)."""
    current = provider()
    if current is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors, filters

    return list(
        aio_client_interceptors(  # type: ignore[no-untyped-call]
            tracer_provider=current, filter_=filters.negate(filters.health_check())
        )
    )


async def traced(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one HTTP request in a server span (`app` straight away when off)."""
    current = provider()
    if current is None or scope["type"] != "http":
        await app(scope, receive, send)
        return
    from opentelemetry import propagate, trace

    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
    method = scope["method"]
    tracer = current.get_tracer(TRACER)
    with tracer.start_as_current_span(
        method,
        context=propagate.extract(headers),
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": scope["path"]},
    ) as span:

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
            await send(message)

        await app(scope, receive, send_tracked)


def name_request(http_method: str, template: str, grpc_path: str) -> None:
    """Name the current request's span after its route (low cardinality)."""
    if not enabled():
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    span.update_name(f"{http_method} {template}")
    span.set_attributes({"http.route": template, "rpc.method": grpc_path})
