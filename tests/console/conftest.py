"""Fixtures of the console tests: a real mesh behind the real gateway, and Debian's
chromium driven by Playwright (which cannot download its own browsers here)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from console_workflows import SteppedWorkflow
from mesh_agents import assistant

from llama_mesh.config import ServiceConfig
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.testing import ScriptedModel
from llama_mesh_gateway import GatewayServer

from agent_services import human
from mesh_workflows import EchoWorkflow, FailingWorkflow, StoppableWorkflow

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# What chromium needs to run headless on these machines (no GPU, no network but
# loopback: without the background-networking flags it dials Google's hosts).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="Playwright for Python is not installed (make install)"
)
if not CHROMIUM.exists():
    pytest.skip(f"no chromium at {CHROMIUM} (make install)", allow_module_level=True)


@dataclass
class ConsoleMesh:
    mesh: LocalMesh
    gateway: GatewayServer
    model: ScriptedModel

    @property
    def console_url(self) -> str:
        return f"{self.gateway.url}/console/"


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
async def console_mesh(nats: EmbeddedNats, model: ScriptedModel) -> AsyncIterator[ConsoleMesh]:
    async with model.serve() as model_url:
        services = {
            # A short lease: the replica reports a pause at its next renewal.
            "echo": (EchoWorkflow(), ServiceConfig("echo", lease=3.0)),
            "stepped": SteppedWorkflow(),
            "fail": FailingWorkflow(),
            "stoppable": StoppableWorkflow(),
            "human": human,
            "assistant": assistant(model_url),
        }
        async with (
            LocalMesh(services, nats_url=nats.url) as mesh,
            GatewayServer(mesh.address, port=0) as gateway,
        ):
            yield ConsoleMesh(mesh, gateway, model)


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """Where a test's screenshots go: test-results/console/<test name>/ (for people)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    path = request.config.rootpath / "test-results" / "console" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with playwright_api.async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir per test
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=DESKTOP,
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
async def page(browser: BrowserContext, console_mesh: ConsoleMesh) -> AsyncIterator[Page]:
    """The console, signed in (the mesh has no authentication: an empty token)."""
    page = browser.pages[0] if browser.pages else await browser.new_page()
    await page.goto(console_mesh.console_url)
    await page.get_by_label("Token").fill("")
    await page.get_by_role("button", name="Sign in").click()
    await page.locator("nav#nav").wait_for(state="visible")
    yield page
