"""JWTs from an external issuer, verified against the issuer's JWKS.

The key set is fetched over HTTP(S) without blocking the event loop, kept for
`jwks_ttl`, and fetched again early when a token names a key id not in it (an issuer
rotating its keys), at most once per `refetch_interval`. Roles come from one claim
(`roles` by default): a list of strings, or one space-separated string.

    jwt = JwtAuthenticator(JwtSettings(issuer="https://id.example.com",
                                       audience="llama-mesh",
                                       jwks_url="https://id.example.com/jwks.json"))
    identity = await jwt.authenticate(token)
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from llama_mesh.core.access import check_namespace, check_role
from llama_mesh.core.errors import InvalidArgumentError, UnauthenticatedError, UnavailableError
from llama_mesh.rpc.identity import Identity

# The claim that names the namespace (tenant) the caller is confined to, if any.
NAMESPACE_CLAIM = "namespace"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JwtSettings:
    """Which issuer's tokens the mesh trusts, and how to read roles from them."""

    issuer: str
    audience: str
    jwks_url: str
    roles_claim: str = "roles"
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    jwks_ttl: float = 300.0
    refetch_interval: float = 10.0
    leeway: float = 30.0


def _roles(value: Any) -> list[str]:
    items = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    roles = []
    for item in items:
        try:
            roles.append(check_role(str(item)))
        except InvalidArgumentError:
            continue  # an issuer's other roles mean nothing to the mesh
    return roles


class JwtAuthenticator:
    """Verifies JWTs of one issuer."""

    _MAX_CACHED = 4096

    def __init__(self, settings: JwtSettings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._http = http or httpx.AsyncClient(timeout=10.0)
        self._owns_http = http is None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._fetching: asyncio.Lock = asyncio.Lock()
        # Tokens verified before, until they expire: a token is checked once, not per call.
        self._verified: dict[str, tuple[Identity, float]] = {}

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _fetch(self) -> None:
        try:
            response = await self._http.get(self.settings.jwks_url)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as err:
            logger.warning("JWKS at %s cannot be read: %s", self.settings.jwks_url, err)
            raise UnavailableError(
                f"the JWT issuer's key set at {self.settings.jwks_url} cannot be read: {err}"
            ) from err
        self._keys = {key.key_id or "": key for key in keys}
        self._fetched_at = time.monotonic()
        logger.info("JWKS of %s: %d key(s)", self.settings.issuer, len(self._keys))

    async def _key(self, kid: str) -> jwt.PyJWK:
        age = time.monotonic() - self._fetched_at
        if kid not in self._keys or age > self.settings.jwks_ttl:
            async with self._fetching:
                age = time.monotonic() - self._fetched_at
                stale = age > self.settings.jwks_ttl
                if stale or (kid not in self._keys and age > self.settings.refetch_interval):
                    await self._fetch()
        key = self._keys.get(kid)
        if key is None and kid == "" and len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        if key is None:
            raise UnauthenticatedError(f"the JWT's key id {kid!r} is not in the issuer's key set")
        return key

    async def authenticate(self, token: str) -> Identity | None:
        if token.count(".") != 2:
            return None
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            return None  # not a JWT: another authenticator's token, or garbage
        key = await self._key(str(header.get("kid") or ""))
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(s.algorithms),
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as err:
            raise UnauthenticatedError(f"the JWT is not valid: {err}") from err
        namespace = claims.get(NAMESPACE_CLAIM) or ""
        try:
            check_namespace(str(namespace), f"the JWT's {NAMESPACE_CLAIM!r} claim")
        except InvalidArgumentError as err:
            if namespace:
                raise UnauthenticatedError(err.message) from err
        identity = Identity.of(
            f"{claims['sub']}@{s.issuer}", _roles(claims.get(s.roles_claim)), str(namespace)
        )
        if len(self._verified) >= self._MAX_CACHED:
            self._verified = {t: v for t, v in self._verified.items() if v[1] > now}
            if len(self._verified) >= self._MAX_CACHED:
                self._verified.clear()
        self._verified[token] = (identity, float(claims["exp"]))
        return identity
