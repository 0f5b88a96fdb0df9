"""A server's security settings (config.SecurityConfig) made into what serve() takes.

async with server_security(SecurityConfig(), keys.lookup) as security:
    async with serve(servicers, security=security): ...
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from llama_mesh.config.security import NO_AUTH, SecurityConfig
from llama_mesh.rpc.api_keys import ApiKeyAuthenticator
from llama_mesh.rpc.auth_interceptor import Authenticator, Authenticators
from llama_mesh.rpc.jwt_auth import JwtAuthenticator, JwtSettings
from llama_mesh.rpc.server import ServerSecurity
from llama_mesh.rpc.tls import ServerTls
from llama_mesh.v1 import auth_pb2

__all__ = ["NO_AUTH", "SecurityConfig", "server_security"]


@contextlib.asynccontextmanager
async def server_security(
    settings: SecurityConfig,
    lookup_key: Callable[[str], Awaitable[auth_pb2.StoredApiKey | None]] | None,
) -> AsyncIterator[ServerSecurity]:
    """The ServerSecurity of `settings`; `lookup_key` reads the mesh's API keys."""
    authenticator: Authenticator | None = None
    jwt: JwtAuthenticator | None = None
    if settings.auth:
        chain: list[Authenticator] = []
        if lookup_key is not None:
            chain.append(ApiKeyAuthenticator(lookup_key))
        if settings.jwt_issuer and settings.jwt_audience and settings.jwt_jwks_url:
            jwt = JwtAuthenticator(
                JwtSettings(
                    issuer=settings.jwt_issuer,
                    audience=settings.jwt_audience,
                    jwks_url=settings.jwt_jwks_url,
                    roles_claim=settings.jwt_roles_claim,
                    refetch_interval=settings.jwt_refetch_interval,
                )
            )
            chain.append(jwt)
        authenticator = Authenticators(chain)
    tls = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls = ServerTls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    try:
        yield ServerSecurity(
            authenticator=authenticator,
            tls=tls,
            open_health=settings.open_health,
            open_reflection=settings.open_reflection,
        )
    finally:
        if jwt is not None:
            await jwt.aclose()
