"""Who may scrape a server's Prometheus endpoint: what its gRPC server asks, for HTTP.

    async with server_security(settings, keys.lookup) as security:
        access = metrics_access(security, open_metrics=settings.open_metrics)
        async with serve_metrics(host, port, access): ...

With authentication on, a scrape must bear a token of an `admin` (an API key of the
mesh, or a JWT of its issuer), checked by the same authenticators as every RPC:
none or a bad one gets 401, a token without the role 403. `open_metrics` (or
authentication off) lets anyone who reaches the port scrape. With TLS on, the
endpoint serves HTTPS with the server's certificate and, for mTLS, asks for a client
certificate its CA signed, as the gRPC server does.
"""

from __future__ import annotations

from http import HTTPStatus

import grpc

from llama_mesh.core.errors import MeshError
from llama_mesh.rpc.auth_interceptor import Authenticator, identify
from llama_mesh.rpc.server import ServerSecurity
from llama_mesh.telemetry.metrics_endpoint import MetricsAccess, ScrapeCheck

_HTTP = {
    grpc.StatusCode.UNAUTHENTICATED: HTTPStatus.UNAUTHORIZED,
    grpc.StatusCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
}


def admin_check(authenticator: Authenticator) -> ScrapeCheck:
    """Admits a scrape whose bearer token names an admin."""

    async def check(authorization: str | None) -> tuple[int, str] | None:
        try:
            who = await identify(authenticator, [("authorization", authorization or "")])
            who.require_admin("scrape metrics")
        except MeshError as err:
            # Anything else (a replica still starting, say): try again later.
            return _HTTP.get(err.code, HTTPStatus.SERVICE_UNAVAILABLE), err.message
        return None

    return check


def metrics_access(security: ServerSecurity, *, open_metrics: bool) -> MetricsAccess:
    """The metrics endpoint's access beside a gRPC server of `security`."""
    check = None
    if security.authenticator is not None and not open_metrics:
        check = admin_check(security.authenticator)
    tls = security.tls.ssl_context() if security.tls is not None else None
    return MetricsAccess(check=check, tls=tls)
