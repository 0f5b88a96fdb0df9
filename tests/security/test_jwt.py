"""JWTs of an external issuer: a test issuer serves its JWKS over real HTTP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest

from llama_mesh.client import AsyncClient, Credentials
from llama_mesh.config import SecurityConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.errors import NotFoundError, PermissionDeniedError, UnauthenticatedError
from llama_mesh.launch.nats_server import EmbeddedNats

from jwt_issuer import AUDIENCE, Issuer, serving_issuer


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    async with serving_issuer() as found:
        yield found


@contextlib.asynccontextmanager
async def _mesh(nats: EmbeddedNats, issuer: Issuer) -> AsyncIterator[str]:
    settings = SecurityConfig(
        jwt_issuer=issuer.url,
        jwt_audience=AUDIENCE,
        jwt_jwks_url=f"{issuer.url}/.well-known/jwks.json",
        jwt_refetch_interval=0.0,
    )
    async with ControlPlaneServer.start([nats.url], security=settings) as cp:
        yield cp.address


def _client(address: str, token: str) -> AsyncClient:
    return AsyncClient(address, credentials=Credentials(token=token), reconnect_timeout=0.5)


async def test_a_jwt_of_the_trusted_issuer_is_a_caller(nats: EmbeddedNats, issuer: Issuer) -> None:
    issuer.add_key("k1")
    async with _mesh(nats, issuer) as address:
        token = issuer.token("k1", roles=["client"])
        async with _client(address, token) as client:
            me = await client.api_keys.whoami()
            assert (me.subject, list(me.roles)) == (f"alice@{issuer.url}", ["client"])
            for _ in range(5):
                await client.list_sessions()
            # Verified once and kept: the key set was fetched once for six calls.
            assert issuer.fetches == 1
            with pytest.raises(PermissionDeniedError):
                await client.api_keys.list()
        # Roles the mesh does not know are ignored; a space-separated claim works too.
        async with _client(address, issuer.token("k1", roles="admin billing")) as admin:
            assert [k.name for k in await admin.api_keys.list()] == []


async def test_bad_jwts_are_unauthenticated(nats: EmbeddedNats, issuer: Issuer) -> None:
    issuer.add_key("k1")
    issuer.add_key("unpublished", publish=False)
    async with _mesh(nats, issuer) as address:
        now = int(time.time())
        bad = {
            "expired": issuer.token("k1", roles=["admin"], exp=now - 600),
            "wrong audience": issuer.token("k1", roles=["admin"], aud="someone-else"),
            "wrong issuer": issuer.token("k1", roles=["admin"], iss="https://evil.example"),
            "unknown key": issuer.token("unpublished", roles=["admin"]),
            "not signed": jwt.encode({"sub": "x", "roles": ["admin"]}, key="", algorithm="none"),
        }
        for what, token in bad.items():
            async with _client(address, token) as client:
                with pytest.raises(UnauthenticatedError):
                    await client.list_sessions()
                    pytest.fail(what)


async def test_a_rotated_issuer_key_is_fetched_when_first_seen(
    nats: EmbeddedNats, issuer: Issuer
) -> None:
    issuer.add_key("k1")
    async with _mesh(nats, issuer) as address:
        async with _client(address, issuer.token("k1", roles=["client"])) as client:
            await client.list_sessions()
        issuer.add_key("k2")  # the issuer rotates: a new key id appears in its JWKS
        async with _client(address, issuer.token("k2", roles=["client"])) as client:
            await client.list_sessions()
        assert issuer.fetches == 2


async def test_a_jwts_namespace_claim_confines_it(nats: EmbeddedNats, issuer: Issuer) -> None:
    issuer.add_key("k1")
    async with _mesh(nats, issuer) as address:
        team_a = issuer.token("k1", roles=["client"], namespace="team-a")
        team_b = issuer.token("k1", sub="bob", roles=["client"], namespace="team-b")
        async with _client(address, team_a) as a, _client(address, team_b) as b:
            assert (await a.api_keys.whoami()).namespace == "team-a"
            session = await a.create_session()
            assert session.session.namespace == "team-a"
            with pytest.raises(NotFoundError, match="not found"):
                await b.get_session(session.name)
            assert await b.list_sessions() == []
        # A namespace that is not a namespace name is no identity at all.
        async with _client(address, issuer.token("k1", roles=["client"], namespace="A B")) as c:
            with pytest.raises(UnauthenticatedError, match="is not a namespace"):
                await c.list_sessions()


async def test_a_jwt_admin_scrapes_metrics_and_a_jwt_client_does_not(
    nats: EmbeddedNats, issuer: Issuer
) -> None:
    """/metrics asks the same authenticators as every RPC: the issuer's JWTs too."""
    issuer.add_key("k1")
    settings = SecurityConfig(
        jwt_issuer=issuer.url,
        jwt_audience=AUDIENCE,
        jwt_jwks_url=f"{issuer.url}/.well-known/jwks.json",
    )
    async with (
        ControlPlaneServer.start([nats.url], security=settings, metrics_port=0) as cp,
        httpx.AsyncClient(timeout=30) as http,
    ):
        assert cp.metrics_url is not None
        for roles, status in ((["client"], 403), (["admin"], 200)):
            token = issuer.token("k1", roles=roles)
            scraped = await http.get(cp.metrics_url, headers={"Authorization": f"Bearer {token}"})
            assert scraped.status_code == status, (roles, scraped.text)
        expired = issuer.token("k1", roles=["admin"], exp=int(time.time()) - 600)
        refused = await http.get(cp.metrics_url, headers={"Authorization": f"Bearer {expired}"})
        assert refused.status_code == 401
