"""The gateway's own listener: `/metrics` open without a MetricsAccess (who may read it
otherwise: tests/security/test_gateway_metrics.py), and HTTPS with a certificate of the
test's CA."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from llama_mesh.launch.certificates import LocalPki
from llama_mesh_gateway import GatewayServer

# Nothing listens there: neither /metrics nor /openapi.json asks the upstream.
NO_UPSTREAM = "127.0.0.1:1"


async def test_metrics_without_an_access_check_are_open() -> None:
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
