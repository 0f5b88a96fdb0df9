"""The gateway's own listener: `/metrics` only to the holder of its token (an attacker
without it gets 401), and HTTPS with a certificate of the test's CA."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from llama_mesh.launch.certificates import LocalPki
from llama_mesh_gateway import GatewayServer

# Nothing listens there: neither /metrics nor /openapi.json asks the upstream.
NO_UPSTREAM = "127.0.0.1:1"


async def test_metrics_with_a_token_answer_only_its_holder() -> None:
    token = "lmk_admin.s3cret"
    async with (
        GatewayServer(NO_UPSTREAM, port=0, metrics=True, metrics_token=token) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        holder = {"Authorization": f"Bearer {token}"}
        refused_before = _refused(await http.get("/metrics", headers=holder))
        anonymous = await http.get("/metrics")
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert "llama_mesh_gateway" not in anonymous.text
        wrong_ones = ("Bearer lmk_admin.s3cre", "Bearer lmk_admin.s3cretX", token, "Basic YWRtaW4=")
        for wrong in wrong_ones:
            refused = await http.get("/metrics", headers={"Authorization": wrong})
            assert refused.status_code == 401, wrong
        scraped = await http.get("/metrics", headers=holder)
        assert scraped.status_code == 200
        assert "# TYPE llama_mesh_gateway_requests_total counter" in scraped.text
        # The refused scrapes were counted as such.
        assert _refused(scraped) == refused_before + 5


def _refused(scrape: httpx.Response) -> float:
    """How many /metrics requests the gateway has refused with 401 (this process)."""
    assert scrape.status_code == 200, scrape.text
    for line in scrape.text.splitlines():
        if line.startswith('llama_mesh_gateway_requests_total{code="401",method="/metrics"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_without_a_token_are_open() -> None:
    async with (
        GatewayServer(NO_UPSTREAM, port=0, metrics=True) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        assert (await http.get("/metrics")).status_code == 200


async def test_https_with_a_certificate_of_the_ca(tmp_path: Path) -> None:
    pki = LocalPki.create(tmp_path / "tls")
    async with GatewayServer(
        NO_UPSTREAM, port=0, tls_cert=pki.server_cert, tls_key=pki.server_key
    ) as server:
        assert server.url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(pki.ca_cert))
        async with httpx.AsyncClient(base_url=server.url, verify=trusting, timeout=30) as http:
            assert (await http.get("/openapi.json")).status_code == 200
        # A client that does not trust the CA is refused at the handshake ...
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get("/openapi.json")
        # ... and plain HTTP gets no answer.
        plain = server.url.replace("https://", "http://")
        async with httpx.AsyncClient(timeout=30) as http:
            with pytest.raises(httpx.HTTPError):
                response = await http.get(f"{plain}/openapi.json")
                assert response.status_code >= 400  # uvicorn answers nothing valid
