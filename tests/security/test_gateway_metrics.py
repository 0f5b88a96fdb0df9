"""The gateway's /metrics asks the control plane who the scraper is (AuthAPI
GetCallerIdentity, with the scrape's own credentials) and answers an admin only: tried
without a token, with a bad one, with a client's key, with an admin's API key and JWT,
with an admin key revoked while the gateway remembers it, and with the control plane
out of reach."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from llama_mesh.client import AsyncClient, Credentials
from llama_mesh.config import SecurityConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.access import new_secret
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh_gateway import GatewayServer, MetricsAccess, create_app
from llama_mesh_gateway.metrics_access import DEFAULT_CACHE_SIZE

from jwt_issuer import AUDIENCE, Issuer, serving_issuer

CALLER_IDENTITY = "/llama_mesh.v1.AuthAPI/GetCallerIdentity"
ROLES = {"admin": ["admin"], "spare-admin": ["admin"], "client": ["client"]}
SCRAPED = "# TYPE llama_mesh_gateway_requests_total counter"
CACHE_SECONDS = 5.0


@dataclass
class Clock:
    """The gateway cache's clock, moved by the test."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Scraped:
    http: httpx.AsyncClient
    tokens: dict[str, str]
    issuer: Issuer
    control_plane: str
    clock: Clock


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def scraped_gateway(
    nats: EmbeddedNats, *, cache_size: int = DEFAULT_CACHE_SIZE
) -> AsyncIterator[Scraped]:
    """A control plane that takes API keys and an issuer's JWTs, and a gateway whose
    /metrics asks it, remembering `cache_size` admitted tokens CACHE_SECONDS on `clock`."""
    tokens, installed = {}, []
    for key_id, roles in ROLES.items():
        tokens[key_id], digest = new_secret(key_id)
        installed.append((key_id, roles, digest))
    clock = Clock()
    access = MetricsAccess(
        CALLER_IDENTITY,
        ("identity.roles", "admin"),
        cache_seconds=CACHE_SECONDS,
        cache_size=cache_size,
        clock=clock,
    )
    async with serving_issuer() as issuer:
        issuer.add_key("k1")
        security = SecurityConfig(
            jwt_issuer=issuer.url,
            jwt_audience=AUDIENCE,
            jwt_jwks_url=f"{issuer.url}/.well-known/jwks.json",
        )
        async with (
            ControlPlaneServer.start([nats.url], security=security, install_keys=installed) as cp,
            GatewayServer(cp.address, port=0, metrics=True, metrics_access=access) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
        ):
            yield Scraped(http, tokens, issuer, cp.address, clock)


async def test_only_an_admin_of_the_control_plane_scrapes_the_gateway(nats: EmbeddedNats) -> None:
    async with scraped_gateway(nats) as mesh:
        http, tokens = mesh.http, mesh.tokens
        anonymous = await http.get("/metrics")
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert "authorization: Bearer <token>" in anonymous.text  # the control plane's words
        assert SCRAPED not in anonymous.text
        key_id, _, secret = tokens["admin"].removeprefix("lmk_").partition(".")
        for forged in ("nonsense", f"lmk_{key_id}.{secret[::-1]}", tokens["admin"] + "x"):
            refused = await http.get("/metrics", headers=bearer(forged))
            assert refused.status_code == 401, (forged, refused.text)
        basic = await http.get("/metrics", auth=("admin", tokens["admin"]))
        assert basic.status_code == 401, basic.text

        denied = await http.get("/metrics", headers=bearer(tokens["client"]))
        assert denied.status_code == 403, denied.text
        assert "identity.roles holds 'admin'" in denied.text
        assert "['client']" in denied.text
        jwt_client = mesh.issuer.token("k1", roles=["client"])
        assert (await http.get("/metrics", headers=bearer(jwt_client))).status_code == 403

        scraped = await http.get("/metrics", headers=bearer(tokens["admin"]))
        assert scraped.status_code == 200, scraped.text
        assert scraped.headers["content-type"].startswith("text/plain")
        assert SCRAPED in scraped.text
        # The refusals were counted as such: the 401s and 403s above.
        assert 'code="401",method="/metrics"} 5.0' in scraped.text
        assert 'code="403",method="/metrics"} 2.0' in scraped.text
        jwt_admin = mesh.issuer.token("k1", roles=["admin"])
        assert (await http.get("/metrics", headers=bearer(jwt_admin))).status_code == 200

        # A refusal is not remembered: the same request is asked again, and refused again.
        assert (await http.get("/metrics")).status_code == 401


async def test_a_revoked_admin_key_scrapes_no_more_once_the_gateway_forgets_it(
    nats: EmbeddedNats,
) -> None:
    async with scraped_gateway(nats) as mesh:
        spare = bearer(mesh.tokens["spare-admin"])
        assert (await mesh.http.get("/metrics", headers=spare)).status_code == 200
        async with AsyncClient(
            mesh.control_plane, credentials=Credentials(token=mesh.tokens["admin"])
        ) as admin:
            await admin.api_keys.delete("spare-admin")
        # Within the cache's lifetime the gateway does not ask again (what a scrape every
        # 15 s costs: one call per lifetime at most) ...
        mesh.clock.now += CACHE_SECONDS - 0.5
        assert (await mesh.http.get("/metrics", headers=spare)).status_code == 200
        # ... and once it has passed, the control plane's answer holds.
        mesh.clock.now += 0.5
        revoked = await mesh.http.get("/metrics", headers=spare)
        assert revoked.status_code == 401, revoked.text
        assert "unknown, revoked or expired" in revoked.text
        # The other admin was never affected.
        admin_scrape = await mesh.http.get("/metrics", headers=bearer(mesh.tokens["admin"]))
        assert admin_scrape.status_code == 200


async def test_the_gateway_remembers_at_most_cache_size_tokens(nats: EmbeddedNats) -> None:
    async with scraped_gateway(nats, cache_size=1) as mesh:
        spare, admin = bearer(mesh.tokens["spare-admin"]), bearer(mesh.tokens["admin"])
        assert (await mesh.http.get("/metrics", headers=spare)).status_code == 200
        # The admin's scrape takes the one place: the spare admin's is forgotten ...
        assert (await mesh.http.get("/metrics", headers=admin)).status_code == 200
        async with AsyncClient(
            mesh.control_plane, credentials=Credentials(token=mesh.tokens["admin"])
        ) as client:
            await client.api_keys.delete("spare-admin")
        # ... so the control plane is asked again at once, though no time has passed.
        assert (await mesh.http.get("/metrics", headers=spare)).status_code == 401
        assert (await mesh.http.get("/metrics", headers=admin)).status_code == 200


async def test_with_authentication_off_the_control_plane_admits_every_scrape(
    nats: EmbeddedNats,
) -> None:
    """What `serve gateway` does by default in front of a control plane without auth."""
    access = MetricsAccess(CALLER_IDENTITY, ("identity.roles", "admin"))
    async with (
        ControlPlaneServer.start([nats.url]) as cp,
        GatewayServer(cp.address, port=0, metrics=True, metrics_access=access) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        scraped = await http.get("/metrics")
        assert scraped.status_code == 200, scraped.text
        assert SCRAPED in scraped.text


async def test_a_control_plane_out_of_reach_is_a_503_that_says_so() -> None:
    access = MetricsAccess(CALLER_IDENTITY, ("identity.roles", "admin"))
    async with (
        GatewayServer("127.0.0.1:1", port=0, metrics=True, metrics_access=access) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        answer = await http.get("/metrics", headers=bearer("lmk_admin.s3cret"))
        assert answer.status_code == 503, answer.text
        assert "the upstream could not tell who the caller is" in answer.text
        assert "UNAVAILABLE" in answer.text
        assert SCRAPED not in answer.text


async def test_a_credential_gRPC_cannot_carry_is_a_400(nats: EmbeddedNats) -> None:
    async with scraped_gateway(nats) as mesh:
        bad = await mesh.http.get("/metrics", headers={b"Authorization": b"Bearer \xff"})
        assert bad.status_code == 400, bad.text
        assert "header Authorization" in bad.text


@pytest.mark.parametrize(
    ("method", "require", "error"),
    [
        (CALLER_IDENTITY, "identity", "identity is not a value field"),
        (CALLER_IDENTITY, "identity.nope", "identity.nope is not a value field"),
        (CALLER_IDENTITY, "identity.roles.x", "roles in identity.roles.x is not a message"),
        ("/llama_mesh.v1.AuthAPI/Nope", "identity.roles", "is not in the descriptor set"),
        ("GetCallerIdentity", "identity.roles", "is not a gRPC method"),
        ("/llama_mesh.v1.ControlPlaneAPI/StreamTaskEvents", "x", "streaming"),
    ],
)
def test_a_check_the_descriptor_set_cannot_carry_fails_at_start(
    method: str, require: str, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        create_app(
            "127.0.0.1:1", metrics=True, metrics_access=MetricsAccess(method, (require, "admin"))
        )
