"""A server's security settings, and the authenticators they give.

settings = SecuritySettings(auth=True, jwt=JwtSettings(...), tls=ServerTls(...))
async with server_security(settings, keys.lookup) as security:
    async with serve(servicers, security=security): ...
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from llama_mesh.rpc.api_keys import ApiKeyAuthenticator
from llama_mesh.rpc.auth_interceptor import Authenticator, Authenticators
from llama_mesh.rpc.jwt_auth import JwtAuthenticator, JwtSettings
from llama_mesh.rpc.server import ServerSecurity
from llama_mesh.rpc.tls import ServerTls
from llama_mesh.v1 import auth_pb2


@dataclass(frozen=True)
class SecuritySettings:
    """How a mesh server checks its callers.

    `auth`: callers must present an API key of the mesh (or a JWT of `jwt`'s issuer);
    off, every caller is admin, which `serve` allows on loopback only.
    """

    auth: bool = False
    jwt: JwtSettings | None = None
    tls: ServerTls | None = None
    open_health: bool = True
    open_reflection: bool = True


NO_AUTH = SecuritySettings()


@contextlib.asynccontextmanager
async def server_security(
    settings: SecuritySettings,
    lookup_key: Callable[[str], Awaitable[auth_pb2.StoredApiKey | None]] | None,
) -> AsyncIterator[ServerSecurity]:
    """The ServerSecurity of `settings`; `lookup_key` reads the mesh's API keys."""
    authenticator: Authenticator | None = None
    jwt: JwtAuthenticator | None = None
    if settings.auth:
        chain: list[Authenticator] = []
        if lookup_key is not None:
            chain.append(ApiKeyAuthenticator(lookup_key))
        if settings.jwt is not None:
            jwt = JwtAuthenticator(settings.jwt)
            chain.append(jwt)
        authenticator = Authenticators(chain)
    try:
        yield ServerSecurity(
            authenticator=authenticator,
            tls=settings.tls,
            open_health=settings.open_health,
            open_reflection=settings.open_reflection,
        )
    finally:
        if jwt is not None:
            await jwt.aclose()
