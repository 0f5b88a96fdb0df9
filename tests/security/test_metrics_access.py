"""The Prometheus endpoints of the control plane and of a replica, with authentication
on: tried as a scraper without a token, with a wrong one, with a client's and a
service's, with a revoked admin key, and as the admin; open with `open_metrics`; HTTPS
only (and a client certificate for mTLS) with TLS on."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from llama_mesh.client import AsyncClient, Credentials
from llama_mesh.config import SecurityConfig, ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.access import new_secret
from llama_mesh.launch.certificates import LocalPki
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.worker.runtime import ServiceRuntime

from mesh_workflows import EchoWorkflow

ROLES = {
    "admin": ["admin"],
    "spare-admin": ["admin"],
    "client": ["client"],
    "echo": ["service:echo", "client"],
}
SCRAPED = "# TYPE llama_mesh_rpcs_total counter"


@contextlib.asynccontextmanager
async def metered_mesh(
    nats: EmbeddedNats, security: SecurityConfig, pki: LocalPki | None = None
) -> AsyncIterator[tuple[dict[str, str], list[str], str]]:
    """A control plane and an echo replica, each serving metrics on a free port:
    (tokens by key id, [control plane's metrics URL, replica's], control plane)."""
    tokens, installed = {}, []
    for key_id, roles in ROLES.items():
        tokens[key_id], digest = new_secret(key_id)
        installed.append((key_id, roles, digest))
    component = Credentials(
        token=tokens["echo"],
        ca_file=pki.ca_cert if pki else None,
        cert_file=pki.client_cert if pki else None,
        key_file=pki.client_key if pki else None,
    )
    async with (
        ControlPlaneServer.start(
            [nats.url], security=security, install_keys=installed, metrics_port=0
        ) as cp,
        ServiceRuntime.start(
            EchoWorkflow(),
            ServiceConfig("echo", metrics_port=0),
            cp.address,
            drain_timeout=2.0,
            credentials=component,
            security=security,
        ) as replica,
    ):
        assert cp.metrics_url is not None and replica.metrics_url is not None
        yield tokens, [cp.metrics_url, replica.metrics_url], cp.address


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_only_an_admin_scrapes_the_control_plane_and_the_replicas(
    nats: EmbeddedNats,
) -> None:
    async with (
        metered_mesh(nats, SecurityConfig()) as (tokens, urls, control_plane),
        httpx.AsyncClient(timeout=30) as http,
    ):
        key_id, _, secret = tokens["admin"].removeprefix("lmk_").partition(".")
        wrong_secret = f"lmk_{key_id}.{secret[::-1]}"
        for url in urls:
            assert url.startswith("http://127.0.0.1:")
            anonymous = await http.get(url)
            assert anonymous.status_code == 401, url
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            assert "authorization: Bearer <token>" in anonymous.text
            assert SCRAPED not in anonymous.text
            for forged in ("nonsense", wrong_secret):
                refused = await http.get(url, headers=bearer(forged))
                assert refused.status_code == 401, (url, forged, refused.text)
            basic = await http.get(url, auth=("admin", tokens["admin"]))
            assert basic.status_code == 401, url
            for who in ("client", "echo"):
                denied = await http.get(url, headers=bearer(tokens[who]))
                assert denied.status_code == 403, (url, who, denied.text)
                assert f"apiKeys/{who} may not scrape metrics" in denied.text
                assert "needs role 'admin'" in denied.text
            scraped = await http.get(url, headers=bearer(tokens["admin"]))
            assert scraped.status_code == 200, (url, scraped.text)
            assert scraped.headers["content-type"].startswith("text/plain")
            assert SCRAPED in scraped.text

        # An admin key revoked through the Auth API scrapes no more.
        spare = bearer(tokens["spare-admin"])
        assert (await http.get(urls[0], headers=spare)).status_code == 200
        async with AsyncClient(
            control_plane, credentials=Credentials(token=tokens["admin"])
        ) as admin:
            await admin.api_keys.delete("spare-admin")
        revoked = await http.get(urls[0], headers=spare)
        assert revoked.status_code == 401
        assert "unknown, revoked or expired" in revoked.text


async def test_open_metrics_lets_anyone_scrape(nats: EmbeddedNats) -> None:
    async with (
        metered_mesh(nats, SecurityConfig(open_metrics=True)) as (_, urls, _),
        httpx.AsyncClient(timeout=30) as http,
    ):
        for url in urls:
            scraped = await http.get(url)
            assert scraped.status_code == 200, (url, scraped.text)
            assert SCRAPED in scraped.text


async def test_with_mtls_metrics_are_https_with_a_client_certificate(
    nats: EmbeddedNats, tmp_path: Path
) -> None:
    pki = LocalPki.create(tmp_path / "pki")
    other = LocalPki.create(tmp_path / "other")
    security = SecurityConfig(
        tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca_cert
    )
    trusting = ssl.create_default_context(cafile=pki.ca_cert)
    with_cert = ssl.create_default_context(cafile=pki.ca_cert)
    with_cert.load_cert_chain(pki.client_cert, pki.client_key)
    with_other_cert = ssl.create_default_context(cafile=pki.ca_cert)
    with_other_cert.load_cert_chain(other.client_cert, other.client_key)
    async with (
        metered_mesh(nats, security, pki) as (tokens, urls, _),
        httpx.AsyncClient(timeout=30) as plain,
        httpx.AsyncClient(timeout=30, verify=trusting) as no_cert,
        httpx.AsyncClient(timeout=30, verify=with_other_cert) as foreign,
        httpx.AsyncClient(timeout=30, verify=with_cert) as http,
    ):
        admin = bearer(tokens["admin"])
        for url in urls:
            assert url.startswith("https://127.0.0.1:"), url
            # A client that connects and says nothing (no TLS handshake) holds up no
            # other scrape: each connection shakes hands in its own thread.
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            _, silent = await asyncio.open_connection("127.0.0.1", port)
            assert (await http.get(url, headers=admin)).status_code == 200
            silent.close()
            # Plain HTTP to the TLS port gets no answer at all.
            with pytest.raises(httpx.TransportError):
                await plain.get(url.replace("https://", "http://"), headers=admin)
            # Nor does TLS without a client certificate, or with one of another CA (TLS
            # 1.3 tells the client after the handshake: httpx raises the SSLError).
            for refused in (no_cert, foreign):
                with pytest.raises((httpx.TransportError, ssl.SSLError)):
                    await refused.get(url, headers=admin)
            assert (await http.get(url)).status_code == 401
            assert (await http.get(url, headers=bearer(tokens["client"]))).status_code == 403
            scraped = await http.get(url, headers=admin)
            assert scraped.status_code == 200, (url, scraped.text)
            assert SCRAPED in scraped.text
