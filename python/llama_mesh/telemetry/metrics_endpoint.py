"""The HTTP endpoint that serves a process's Prometheus metrics (``GET /metrics``).

    async with serve_metrics("127.0.0.1", 0) as url:  # http://127.0.0.1:PORT/metrics
        ...
    async with serve_metrics(host, 0, MetricsAccess(check, tls_context)) as url:
        ...                                           # https://…, each scrape checked

A thread of its own answers (prometheus-client's WSGI app, in wsgiref's server), so a
busy event loop does not hold up an open scrape. A guarded one asks `check` about the
scrape's `Authorization` header on the event loop the endpoint was started from (the
caller's authenticators live there): a dictionary lookup and a hash for an API key.
With TLS, each connection's handshake runs in that connection's own thread, so a
client that connects and says nothing holds up no one else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app

logger = logging.getLogger(__name__)

# Answers a scrape's Authorization header (None: it sent none): None to serve it, or
# (HTTP status, message) to refuse it.
ScrapeCheck = Callable[[str | None], Coroutine[Any, Any, tuple[int, str] | None]]

# How long a connection may take to finish its TLS handshake, or stay idle.
CONNECTION_SECONDS = 30.0
# How long a scrape waits for its token to be checked.
CHECK_SECONDS = 10.0


@dataclass(frozen=True)
class MetricsAccess:
    """Who may scrape: `check` each request (None: anyone who reaches the port), over
    TLS with `tls` (None: plain HTTP)."""

    check: ScrapeCheck | None = None
    tls: ssl.SSLContext | None = None


OPEN = MetricsAccess()

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Quiet(WSGIRequestHandler):
    """No line on stderr per request (the process logs what matters)."""

    timeout = CONNECTION_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A thread per connection; TLS set up in that thread."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(CONNECTION_SECONDS)
        try:
            secured = self.tls.wrap_socket(request, server_side=True)
        except OSError as err:  # plain HTTP, no client certificate, a silent client
            logger.debug("metrics: TLS handshake with %s failed: %s", client_address, err)
            return
        with secured:
            super().finish_request(secured, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-response: nothing to tell anyone.
        logger.debug("metrics: connection from %s ended early", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _guarded(app: WsgiApp, check: ScrapeCheck, loop: asyncio.AbstractEventLoop) -> WsgiApp:
    """`app`, answered only once `check` (run on `loop`) admits the request."""

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        future = asyncio.run_coroutine_threadsafe(check(environ.get("HTTP_AUTHORIZATION")), loop)
        try:
            refusal = future.result(CHECK_SECONDS)
        except concurrent.futures.TimeoutError:
            future.cancel()
            refusal = (503, "the token could not be checked in time; scrape again")
        except Exception:
            logger.exception("metrics: checking a scrape's token failed")
            refusal = (503, "the token could not be checked; scrape again")
        if refusal is None:
            return app(environ, start_response)
        status, message = refusal
        headers = [("Content-Type", "text/plain; charset=utf-8")]
        if status == HTTPStatus.UNAUTHORIZED:
            headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [f"{message}\n".encode()]

    return guarded


@contextlib.asynccontextmanager
async def serve_metrics(
    host: str, port: int | None, access: MetricsAccess = OPEN
) -> AsyncIterator[str | None]:
    """Serve ``GET /metrics`` on `host`:`port` (0: a free port; None: not at all) while
    the block runs, to whom `access` admits; yields its URL."""
    if port is None:
        yield None
        return
    app: WsgiApp = make_wsgi_app()
    if access.check is not None:
        app = _guarded(app, access.check, asyncio.get_running_loop())
    server = (_Server6 if ":" in host else _Server)((host, port), _Quiet)
    server.tls = access.tls
    server.set_app(app)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if access.tls is not None else "http"
    try:
        yield f"{scheme}://{shown}:{server.server_port}/metrics"
    finally:
        # shutdown() waits for the serving thread's next poll (up to half a second).
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        thread.join()
