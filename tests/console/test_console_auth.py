"""The console signs in like any client: a bearer token, checked by the mesh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("playwright", reason="Playwright for Python is not installed (make install)")

# A browser and a mesh per test, on a shared 2-core machine.
pytestmark = pytest.mark.timeout(300)

from playwright.async_api import BrowserContext, expect  # noqa: E402

from llama_mesh.client import Credentials  # noqa: E402
from llama_mesh.config import SecurityConfig, ServiceConfig  # noqa: E402
from llama_mesh.control_plane.server import ControlPlaneServer  # noqa: E402
from llama_mesh.core.access import new_secret  # noqa: E402
from llama_mesh.launch.nats_server import EmbeddedNats  # noqa: E402
from llama_mesh.worker.runtime import ServiceRuntime  # noqa: E402
from llama_mesh_gateway import GatewayServer  # noqa: E402

from mesh_workflows import EchoWorkflow  # noqa: E402


@pytest.fixture
async def secure_console(nats: EmbeddedNats) -> AsyncIterator[tuple[str, str]]:
    """(console URL, a client token) of a mesh that authenticates every call."""
    client_token, client_digest = new_secret("console-user")
    echo_token, echo_digest = new_secret("echo")
    keys = [("console-user", ["client"], client_digest), ("echo", ["service:echo"], echo_digest)]
    async with (
        ControlPlaneServer.start(
            [nats.url], security=SecurityConfig(), install_keys=keys
        ) as control_plane,
        ServiceRuntime.start(
            EchoWorkflow(),
            ServiceConfig("echo"),
            control_plane.address,
            credentials=Credentials(token=echo_token),
            security=SecurityConfig(),
        ),
        GatewayServer(control_plane.address, port=0) as gateway,
    ):
        yield f"{gateway.url}/console/", client_token


async def test_a_wrong_token_is_refused_and_a_right_one_opens_the_mesh(
    browser: BrowserContext, secure_console: tuple[str, str], output_dir: Path
) -> None:
    url, token = secure_console
    page = browser.pages[0] if browser.pages else await browser.new_page()
    await page.goto(url)
    await page.get_by_label("Token").fill("not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#sign-in [role=alert]")).to_be_visible()
    await expect(page.locator("nav#nav")).to_be_hidden()
    await page.screenshot(path=output_dir / "sign-in-refused.png", full_page=True)

    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator('#services tr[data-service="echo"]')).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 1  # kept for this tab only
    assert await page.evaluate("localStorage.getItem('llama-mesh-console-token')") is None

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("Token")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
