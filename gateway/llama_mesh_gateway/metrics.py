"""The gateway's Prometheus metrics: HTTP requests by gRPC method and HTTP status.

Served at ``GET /metrics`` (prometheus-client's default registry, so whatever else the
process counts is there too) when the app is made with ``metrics=True``.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

#: Seconds of a request, from a quick unary call to a long stream.
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

HTTP_REQUESTS = Counter(
    "llama_mesh_gateway_requests",
    "HTTP requests the gateway answered, by the gRPC method they were routed to "
    "(`/healthz`, `/openapi.json`, `/metrics` for its own; `none` when no route "
    "matched) and the HTTP status (499: the client left first).",
    ["method", "code"],
)
HTTP_DURATION = Histogram(
    "llama_mesh_gateway_request_duration_seconds",
    "From a request's arrival to the end of its response (of a stream: its end), by method.",
    ["method"],
    buckets=_SECONDS,
)

#: Where the ASGI scope keeps the gRPC method a request was routed to.
METHOD_KEY = "llama_mesh_gateway.method"


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and their content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


def count(method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, str(status)).inc()
    HTTP_DURATION.labels(method).observe(seconds)
