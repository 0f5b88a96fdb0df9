"""The gateway as an ASGI application.

>>> app = create_app("127.0.0.1:50051")  # serve it with any ASGI server

Built-in endpoints: `GET /healthz` (the upstream's grpc.health.v1 status; 200 when it is
SERVING, 503 otherwise: upstream_health.py), `GET /openapi.json`, when asked `GET /metrics`
(Prometheus: requests by gRPC method and HTTP status, metrics.py; given a
`metrics_access`, only to a caller an upstream RPC admits: metrics_access.py), a trace
span per request when tracing
(tracing.py), and the web
console's static files under `/console/` (console.py). Every other path is routed by the
google.api.http rules of the descriptor set: a unary call answers with one JSON body,
a server-streaming one is relayed as SSE or NDJSON (stream_relay.py). One gRPC channel
to the upstream is opened at lifespan startup (or at the first request when the server
runs no lifespan) and closed at lifespan shutdown or by `Gateway.aclose()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llama_mesh_gateway import asgi_io, metrics, streaming, tracing
from llama_mesh_gateway.console import CONSOLE_PATH, ConsoleFiles
from llama_mesh_gateway.metadata import Metadata, request_metadata, response_headers
from llama_mesh_gateway.metrics_access import MetricsAccess, MetricsGuard
from llama_mesh_gateway.openapi import openapi_json
from llama_mesh_gateway.routes import Match, MethodNotAllowed, Route, RouteTable, Schema
from llama_mesh_gateway.status import (
    GatewayError,
    from_rpc_error,
    invalid_argument,
)
from llama_mesh_gateway.stream_relay import relay_stream
from llama_mesh_gateway.transcode import build_request, response_json
from llama_mesh_gateway.upstream_health import send_health
from llama_mesh_gateway.upstream_tls import UpstreamTls

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_HEARTBEAT_SECONDS = 15.0
# Receive upstream trailers up to 64 KiB (gRPC's default is 8 KiB): an upstream whose
# error message echoes a long value then still gets its own status, truncated here,
# instead of RESOURCE_EXHAUSTED from this channel.
_RESPONSE_METADATA_BYTES = 64 * 1024
_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_metadata_size", _RESPONSE_METADATA_BYTES),
    ("grpc.absolute_max_metadata_size", _RESPONSE_METADATA_BYTES),
]
_BUILT_IN = frozenset({"/healthz", "/openapi.json", "/metrics"})


class Gateway:
    """The transcoding ASGI app for one upstream and one descriptor set."""

    def __init__(
        self,
        upstream: str,
        schema: Schema,
        *,
        services: Sequence[str] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
        cors_origins: Sequence[str] = (),
        channel_options: Sequence[tuple[str, Any]] = (),
        metrics: bool = False,
        metrics_access: MetricsAccess | None = None,
        upstream_tls: UpstreamTls | None = None,
        console: bool = True,
    ) -> None:
        self.upstream = upstream
        self.metrics = metrics
        # Built now, so a method the descriptor set lacks fails at start.
        self._metrics_guard = (
            MetricsGuard(metrics_access, schema.pool) if metrics_access is not None else None
        )
        self.upstream_tls = upstream_tls
        self._console = ConsoleFiles() if console else None
        self.schema = schema
        self.max_body_bytes = max_body_bytes
        self.heartbeat_seconds = heartbeat_seconds
        self.table = RouteTable(schema.routes(services))
        self._channel_options = [*_CHANNEL_OPTIONS, *channel_options]
        # Read now, so a missing CA file fails at start, not at the first request.
        self._credentials = upstream_tls.credentials() if upstream_tls else None
        if upstream_tls is not None:
            self._channel_options += upstream_tls.channel_options()
        self._channel: grpc.aio.Channel | None = None
        self._callables: dict[str, Any] = {}
        self._openapi: bytes | None = None
        self._streams: set[Any] = set()
        self._closing = False
        self._app: ASGIApp = self._handle
        if cors_origins:
            self._app = CORSMiddleware(
                self._handle,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["*"],
                expose_headers=["*"],
            )

    # -- lifecycle -------------------------------------------------------------

    @property
    def channel(self) -> grpc.aio.Channel:
        """The one channel to the upstream, opened on first use."""
        if self._channel is None:
            # When tracing, each call carries the request's trace context.
            interceptors = tracing.client_interceptors()
            if self._credentials is not None:
                self._channel = grpc.aio.secure_channel(
                    self.upstream,
                    self._credentials,
                    options=self._channel_options,
                    interceptors=interceptors,
                )
            else:
                self._channel = grpc.aio.insecure_channel(
                    self.upstream, options=self._channel_options, interceptors=interceptors
                )
            logger.info("gateway channel to %s opened", self.upstream)
        return self._channel

    async def aclose(self) -> None:
        """Close the upstream channel (cancels calls in flight)."""
        if self._channel is not None:
            channel, self._channel = self._channel, None
            self._callables.clear()
            await channel.close(None)
            logger.info("gateway channel to %s closed", self.upstream)

    def begin_shutdown(self) -> None:
        """End open streams (each gets a final UNAVAILABLE error item)."""
        self._closing = True
        for call in list(self._streams):
            call.cancel()

    def _callable(self, route: Route) -> Any:
        fn = self._callables.get(route.grpc_path)
        if fn is None:
            make = self.channel.unary_stream if route.server_streaming else self.channel.unary_unary
            fn = make(
                route.grpc_path,
                request_serializer=_serialize,
                response_deserializer=route.response_class.FromString,
            )
            self._callables[route.grpc_path] = fn
        return fn

    def openapi_document(self) -> bytes:
        """The OpenAPI document, generated once."""
        if self._openapi is None:
            self._openapi = openapi_json(self.schema, self.table.routes).encode()
        return self._openapi

    # -- ASGI ------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await tracing.traced(self._app, scope, receive, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = False
        status = 0
        begun = time.perf_counter()

        async def send_tracked(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
            await send(message)

        try:
            await self._http(scope, receive, send_tracked)
        except GatewayError as e:
            await asgi_io.send_error(send_tracked, e)
        except asgi_io.Disconnected:
            logger.debug("client left during %s %s", scope["method"], scope["path"])
        except Exception:
            # A bug: logged with its traceback, answered as a Status like every error.
            logger.exception("gateway error in %s %s", scope["method"], scope["path"])
            if started:
                raise
            await asgi_io.send_error(
                send_tracked,
                GatewayError(grpc.StatusCode.INTERNAL, "internal error in the gateway"),
            )
        finally:
            if self.metrics:
                # 499: the client left before an answer (nginx's convention).
                method = scope.get(metrics.METHOD_KEY, "none")
                metrics.count(method, status or 499, time.perf_counter() - begun)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                _ = self.channel
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        raw_path = asgi_io.raw_path(scope)
        if raw_path in _BUILT_IN:
            scope[metrics.METHOD_KEY] = raw_path
        if raw_path == "/healthz" and method in ("GET", "HEAD"):
            await send_health(self.channel, self.upstream, send, head=method == "HEAD")
            return
        if raw_path == "/openapi.json" and method == "GET":
            await asgi_io.send_body(
                send, 200, {"content-type": asgi_io.JSON}, self.openapi_document()
            )
            return
        if raw_path == "/metrics" and method == "GET" and self.metrics:
            if self._metrics_guard is not None:
                md, _ = request_metadata(scope.get("headers", []), scope.get("client"))
                await self._metrics_guard.check(self.channel, md)
            body, content_type = metrics.exposition()
            await asgi_io.send_body(send, 200, {"content-type": content_type}, body)
            return
        if self._console is not None and (
            raw_path == CONSOLE_PATH or raw_path.startswith(CONSOLE_PATH + "/")
        ):
            await self._console(scope, receive, send)
            return
        try:
            match = self.table.find(method, raw_path)
        except MethodNotAllowed as e:
            raise GatewayError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"method {method} is not allowed on {raw_path}; allowed: {e}",
                http=405,
                headers={"allow": ", ".join(e.allowed)},
            ) from None
        except UnicodeDecodeError:
            raise invalid_argument("path is not UTF-8 once percent-decoded") from None
        if match is None:
            raise GatewayError(grpc.StatusCode.NOT_FOUND, f"no route for {method} {raw_path}")
        try:
            await self._call(match, scope, receive, send)
        except GatewayError as e:
            e.format = match.route.style.error_format
            raise

    async def _call(self, match: Match, scope: Scope, receive: Receive, send: Send) -> None:
        """Transcode the request of a matched route, call the upstream, answer."""
        route = match.route
        scope[metrics.METHOD_KEY] = route.grpc_path
        tracing.name_request(route.http_method, route.template.source, route.grpc_path)
        if route.client_streaming:
            raise GatewayError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{route.method.full_name} is client streaming, which REST does not carry",
                http=501,
            )
        headers = asgi_io.request_headers(scope)
        body = await asgi_io.read_body(receive, headers, self.max_body_bytes)
        if route.body and body.strip():
            asgi_io.check_content_type(headers.get("content-type", ""))
        query = asgi_io.query_pairs(scope)
        md, timeout = request_metadata(scope.get("headers", []), scope.get("client"))
        overrides: dict[str, str] = {}
        last_event_id = headers.get("last-event-id")
        if (route.server_streaming or route.stream_twin) and last_event_id:
            field = streaming.resume_field(route.method.input_type)  # twins share it
            if field is not None:
                if not asgi_io.DIGITS.fullmatch(last_event_id.strip()):
                    raise invalid_argument("header Last-Event-ID is not a sequence number")
                overrides[field] = last_event_id.strip()
        request = build_request(match, body, query, self.schema.pool, overrides=overrides)
        twin = route.stream_twin
        if twin is not None and getattr(request, twin.method_style.stream_field):
            route = twin  # the same request message, so the same request
        logger.debug("%s %s -> %s", scope["method"], scope["path"], route.grpc_path)
        if route.server_streaming:
            await self._stream(route, request, md, timeout, headers, receive, send)
        else:
            await self._unary(route, request, md, timeout, receive, send)

    async def _unary(
        self,
        route: Route,
        request: message.Message,
        md: Metadata,
        call_timeout: float | None,
        receive: Receive,
        send: Send,
    ) -> None:
        call = self._callable(route)(request, metadata=md, timeout=call_timeout)
        try:
            response = await asgi_io.until_disconnect(call, receive)
            initial = await call.initial_metadata()
            trailing = await call.trailing_metadata()
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e, self.schema.pool) from None
        finally:
            call.cancel()  # no-op when the call has finished
        value = response_json(route, response, self.schema.pool)
        headers = {"content-type": asgi_io.JSON, **response_headers(initial, trailing)}
        await asgi_io.send_body(send, 200, headers, asgi_io.dumps(value))

    async def _stream(
        self,
        route: Route,
        request: message.Message,
        md: Metadata,
        call_timeout: float | None,
        headers: dict[str, str],
        receive: Receive,
        send: Send,
    ) -> None:
        call = self._callable(route)(request, metadata=md, timeout=call_timeout)
        self._streams.add(call)
        try:
            await relay_stream(
                call,
                route,
                self.schema.pool,
                headers,
                self.heartbeat_seconds,
                self._cancelled,
                receive,
                send,
            )
        finally:
            self._streams.discard(call)

    def _cancelled(self) -> GatewayError:
        """The error of a stream whose upstream call the gateway cancelled."""
        if self._closing:
            return GatewayError(
                grpc.StatusCode.UNAVAILABLE,
                "the gateway is shutting down; resume with Last-Event-ID",
            )
        return GatewayError(grpc.StatusCode.CANCELLED, "the upstream call was cancelled")


def _serialize(msg: message.Message) -> bytes:
    return msg.SerializeToString()


def create_app(
    upstream: str,
    *,
    descriptor_set: bytes | Path | str | None = None,
    services: Sequence[str] | None = None,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    metrics: bool = False,
    metrics_access: MetricsAccess | None = None,
    upstream_tls: UpstreamTls | None = None,
    console: bool = True,
) -> Gateway:
    """The gateway ASGI app for `upstream` ("host:port").

    `descriptor_set` is a serialized FileDescriptorSet (bytes or a path) with imports;
    the default is llama_mesh.v1's. `services` limits the routes to those services
    (full or short names). `cors_origins` enables CORS for those origins ("*" for any).
    `max_body_bytes` bounds request bodies (413 above it); `heartbeat_seconds` is the
    idle interval after which a stream gets a keep-alive. `metrics` serves `GET /metrics`,
    to anyone, or with `metrics_access` only to the callers an upstream RPC admits.
    `upstream_tls` makes the gateway reach the upstream over TLS (plaintext without it).
    `console` serves the web console at `/console/` (docs/console.md).

    >>> app = create_app("127.0.0.1:50051", cors_origins=["https://example.com"])
    """
    return Gateway(
        upstream,
        Schema.load(descriptor_set),
        services=services,
        max_body_bytes=max_body_bytes,
        heartbeat_seconds=heartbeat_seconds,
        cors_origins=cors_origins,
        metrics=metrics,
        metrics_access=metrics_access,
        upstream_tls=upstream_tls,
        console=console,
    )
