"""Fixtures of the console tests: a real mesh behind the real gateway, and Debian's
chromium driven by Playwright (which cannot download its own browsers here)."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from console_support import CHROMIUM, CHROMIUM_ARGS, DESKTOP, HAVE_CHROMIUM, ConsoleMesh
from console_workflows import ReviewWorkflow, SteppedWorkflow
from mesh_agents import assistant

from llama_mesh.config import ServiceConfig
from llama_mesh.launch.local import LocalMesh, ServiceSpec
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.testing import ScriptedModel
from llama_mesh_gateway import GatewayServer

from agent_services import human
from mesh_workflows import (
    EchoWorkflow,
    FailingWorkflow,
    InnerWorkflow,
    StoppableWorkflow,
    make_outer,
)

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
async def console_mesh(nats: EmbeddedNats, model: ScriptedModel) -> AsyncIterator[ConsoleMesh]:
    async with model.serve() as model_url:
        services: dict[str, ServiceSpec] = {
            # A short lease: the replica reports a pause at its next renewal.
            "echo": (EchoWorkflow(), ServiceConfig("echo", lease=3.0)),
            "stepped": SteppedWorkflow(timeout=None),
            "fail": FailingWorkflow(),
            "stoppable": StoppableWorkflow(),
            "human": human,
            "review": ReviewWorkflow(timeout=None),
            "assistant": assistant(model_url),
            "outer": make_outer(),  # runs `inner` as a child task
            "inner": InnerWorkflow(),
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
    # The test modules skip without Playwright; without a browser, so does this.
    if not HAVE_CHROMIUM:
        pytest.skip(f"no chromium at {CHROMIUM} (make install installs Debian's)")
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=30_000)  # a loaded machine; a failure still fails
    async with async_playwright() as pw:
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
    # What the page logs goes to the test's output, for whoever reads a failure.
    page.on("console", lambda msg: print(f"console.{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: print(f"page error: {err}"))
    page.on(
        "response",
        lambda r: print(f"HTTP {r.status} {r.request.method} {r.url}") if r.status >= 400 else None,
    )
    await page.goto(console_mesh.console_url)
    await page.get_by_label("Token").fill("")
    await page.get_by_role("button", name="Sign in").click()
    await page.locator("nav#nav").wait_for(state="visible")
    yield page
