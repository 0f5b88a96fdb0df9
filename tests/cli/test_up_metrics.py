"""`up` closes every Prometheus endpoint it runs: with authentication on, the control
plane's, the replicas' and the gateway's /metrics answer an admin only (the first two
over HTTPS with `tls: auto`; the gateway asks the control plane who the scraper is);
`security.open_metrics: true` opens all three."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from .conftest import cli, llama_mesh_up, quickstart, write_deployment

SCRAPED = "# TYPE llama_mesh_rpcs_total counter"
GATEWAY_SCRAPED = "# TYPE llama_mesh_gateway_requests_total counter"


def _metered(tmp_path: Path) -> dict[str, object]:
    """The quickstart's echo, the control plane and the replica each with metrics."""
    data = quickstart(tmp_path, services=["echo"])
    data["control_plane"]["metrics_port"] = 0
    data["services"]["echo"].update(metrics_port=0, replicas=1)
    return data


@pytest.mark.timeout(180)
async def test_up_with_tls_auto_serves_metrics_over_https_to_the_admin_only(
    tmp_path: Path,
) -> None:
    data = _metered(tmp_path)
    data["security"] = {"tls": "auto"}
    file = write_deployment(tmp_path / "deployment.yaml", data)
    async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
        urls = up.summary["metrics"]
        components = [name for name in urls if name != "gateway"]
        assert len(components) == 2, urls  # the control plane and the replica
        tls = up.summary["tls"]
        # What a Prometheus scrape configuration names: the CA, the components'
        # client certificate (mTLS), the admin token.
        scraper = ssl.create_default_context(cafile=tls["ca"])
        scraper.load_cert_chain(tls["cert"], tls["key"])
        created = await cli(
            "keys", "create", "--role", "client", "--id", "ci", "-f", str(file), "-o", "json"
        )  # fmt: skip
        assert created.code == 0, created.stderr
        client_token = created.json()["token"]
        async with (
            httpx.AsyncClient(timeout=30) as plain,
            httpx.AsyncClient(timeout=30, verify=scraper) as http,
        ):
            for name in components:
                url = str(urls[name])
                assert url.startswith("https://127.0.0.1:"), (name, url)
                admin = {"Authorization": f"Bearer {up.token}"}
                with pytest.raises(httpx.TransportError):
                    await plain.get(url.replace("https://", "http://"), headers=admin)
                assert (await http.get(url)).status_code == 401, name
                client = {"Authorization": f"Bearer {client_token}"}
                assert (await http.get(url, headers=client)).status_code == 403, name
                scraped = await http.get(url, headers=admin)
                assert scraped.status_code == 200, (name, scraped.text)
                assert SCRAPED in scraped.text
            # The gateway asks the control plane (over its mTLS channel) who scrapes.
            gateway = str(urls["gateway"])
            assert (await plain.get(gateway)).status_code == 401
            assert (await plain.get(gateway, headers=client)).status_code == 403
            scraped = await plain.get(gateway, headers=admin)
            assert scraped.status_code == 200, scraped.text
            assert GATEWAY_SCRAPED in scraped.text
        assert await up.stop() == 0


@pytest.mark.timeout(180)
async def test_open_metrics_opens_every_endpoint(tmp_path: Path) -> None:
    data = _metered(tmp_path)
    data["security"] = {"open_metrics": True}
    file = write_deployment(tmp_path / "deployment.yaml", data)
    async with (
        llama_mesh_up(file, log=tmp_path / "up.log") as up,
        httpx.AsyncClient(timeout=30) as http,
    ):
        urls = up.summary["metrics"]
        assert len(urls) == 3, urls  # the control plane, the replica, the gateway
        for name, url in urls.items():
            scraped = await http.get(str(url))
            assert scraped.status_code == 200, (name, scraped.text)
        # Authentication is still on for everything else.
        sessions = await http.get(f"{up.summary['gateway']}/v1/sessions")
        assert sessions.status_code == 401, sessions.text
