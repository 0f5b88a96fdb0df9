"""Running the gateway: an embeddable uvicorn server with readiness and a bound port.

>>> async def main() -> None:
...     async with GatewayServer("127.0.0.1:50051", port=0) as server:
...         print(server.url)  # http://127.0.0.1:<the port the OS chose>
...         await server.wait_closed()  # or do something else, then leave the block

`serve()` runs one until it is cancelled; `python -m llama_mesh_gateway` runs one from
the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from types import TracebackType

import uvicorn

from llama_mesh_gateway import tracing
from llama_mesh_gateway.app import (
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_MAX_BODY_BYTES,
    Gateway,
    create_app,
)
from llama_mesh_gateway.metrics_access import MetricsAccess
from llama_mesh_gateway.upstream_tls import UpstreamTls

logger = logging.getLogger(__name__)

#: Unary calls in flight get this long to finish at stop(); streams end at once.
SHUTDOWN_GRACE_SECONDS = 5.0


class _Uvicorn(uvicorn.Server):
    """uvicorn.Server that signals readiness and leaves signals to its embedder."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self._handle_signals = handle_signals

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield


class GatewayServer:
    """The gateway served over HTTP by uvicorn on `host:port` (port 0: any free port);
    over HTTPS given `tls_cert` and `tls_key` (PEM files)."""

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        descriptor_set: bytes | Path | str | None = None,
        services: Sequence[str] | None = None,
        cors_origins: Sequence[str] = (),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
        handle_signals: bool = False,
        log_level: str = "warning",
        metrics: bool = False,
        metrics_access: MetricsAccess | None = None,
        upstream_tls: UpstreamTls | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
        self.app: Gateway = create_app(
            upstream,
            descriptor_set=descriptor_set,
            services=services,
            cors_origins=cors_origins,
            max_body_bytes=max_body_bytes,
            heartbeat_seconds=heartbeat_seconds,
            metrics=metrics,
            metrics_access=metrics_access,
            upstream_tls=upstream_tls,
        )
        self.host = host
        self.https = tls_cert is not None
        self._port = port
        self._config = uvicorn.Config(
            self.app,
            lifespan="on",
            log_level=log_level,
            access_log=False,
            # uvicorn's lines go where the process's logging goes (its embedder sets it).
            log_config=None,
            proxy_headers=False,  # the gateway forwards X-Forwarded-For itself
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS),
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
        )
        self._server = _Uvicorn(self._config, handle_signals=handle_signals)
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """The bound port (known after start())."""
        if self._socket is None:
            return self._port
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """`http://host:port` (`https://` with TLS) of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.https else 'http'}://{host}:{self.port}"

    async def start(self) -> None:
        """Bind, start serving, and return once uvicorn is ready."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
        # when the listening socket says TCP, and without it Nagle and the client's
        # delayed ACK add ~40 ms to every response on a kept-alive connection.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._port))
            sock.listen(2048)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        ready = asyncio.create_task(self._server.ready.wait())
        done, _ = await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            await asyncio.gather(ready, return_exceptions=True)
            self._task.result()  # raises what stopped it
            raise RuntimeError("the gateway server stopped during startup")
        logger.info("gateway for %s listening on %s", self.app.upstream, self.url)

    async def wait_closed(self) -> None:
        """Wait until the server stops."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Stop accepting, let unary calls finish, end streams, close the channel.

        Open streams end with an UNAVAILABLE error item; clients resume elsewhere with
        Last-Event-ID.
        """
        if self._task is None:
            return
        self._server.should_exit = True
        self.app.begin_shutdown()
        try:
            await self._task
        finally:
            self._task = None
            await self.app.aclose()
            if self._socket is not None:
                self._socket.close()
            logger.info("gateway for %s stopped", self.app.upstream)

    async def __aenter__(self) -> GatewayServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(
    upstream: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    descriptor_set: bytes | Path | str | None = None,
    services: Sequence[str] | None = None,
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    handle_signals: bool = False,
    on_ready: Callable[[GatewayServer], object] | None = None,
    metrics: bool = False,
    metrics_access: MetricsAccess | None = None,
    upstream_tls: UpstreamTls | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    log_level: str = "info",
) -> None:
    """Serve the gateway until cancelled (or, with handle_signals, until Ctrl-C).

    `on_ready(server)` is called once the port is bound and requests are served; with
    port 0, `server.port` / `server.url` tell where. `metrics` serves `GET /metrics`
    (given `metrics_access`, only to the callers an upstream RPC admits); `tls_cert` and
    `tls_key` serve HTTPS; `log_level` is uvicorn's. It traces when the OTEL_*
    variables name a collector.

    >>> asyncio.run(serve("127.0.0.1:50051", port=8080))  # doctest: +SKIP
    """
    # Traces go where the OTEL_* variables say (none: not traced).
    stop_tracing = tracing.configure_tracing()
    server = GatewayServer(
        upstream,
        host=host,
        port=port,
        descriptor_set=descriptor_set,
        services=services,
        cors_origins=cors_origins,
        max_body_bytes=max_body_bytes,
        heartbeat_seconds=heartbeat_seconds,
        handle_signals=handle_signals,
        log_level=log_level,
        metrics=metrics,
        metrics_access=metrics_access,
        upstream_tls=upstream_tls,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    await server.start()
    try:
        if on_ready is not None:
            on_ready(server)
        await server.wait_closed()
    finally:
        await server.stop()
        if stop_tracing is not None:
            stop_tracing()  # exports the spans not sent yet
