"""The console's shell and its Mesh page, in a real browser against a real mesh."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

pytest.importorskip("playwright", reason="Playwright for Python is not installed (make install)")

# A browser and a mesh per test, on a shared 2-core machine.
pytestmark = pytest.mark.timeout(300)

from console_support import PHONE, ConsoleMesh  # noqa: E402
from playwright.async_api import Page, expect  # noqa: E402


async def test_the_gateway_serves_the_console_and_nothing_outside_it(
    console_mesh: ConsoleMesh,
) -> None:
    async with httpx.AsyncClient(base_url=console_mesh.gateway.url) as http:
        redirect = await http.get("/console")
        page = await http.get("/console/")
        script = await http.get("/console/js/main.js")
        escape = await http.get("/console/..%2f..%2fapp.py")
        missing = await http.get("/console/js/nothing.js")
        post = await http.post("/console/index.html")
    assert redirect.status_code == 308 and redirect.headers["location"] == "/console/"
    assert page.status_code == 200 and "<title>llama-mesh console</title>" in page.text
    assert page.headers["cache-control"] == "no-cache"
    assert script.status_code == 200
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert escape.status_code == 404 and missing.status_code == 404
    assert missing.json() == {
        "code": 5,
        "message": "the console has no file /console/js/nothing.js",
        "details": [],
    }
    assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"


async def test_the_mesh_page_shows_every_service_with_its_kind_and_replicas(
    page: Page, console_mesh: ConsoleMesh, output_dir: Path
) -> None:
    rows = page.locator("#services tbody tr")
    await expect(rows).to_have_count(9)
    expected = {
        "assistant": "agent",
        "echo": "workflow",
        "fail": "workflow",
        "human": "human",
        "inner": "workflow",
        "outer": "workflow",
        "review": "workflow",
        "stepped": "workflow",
        "stoppable": "workflow",
    }
    for service, kind in expected.items():
        row = page.locator(f'#services tr[data-service="{service}"]')
        await expect(row.locator("td").nth(1)).to_have_text(kind)
        await expect(row.locator("td").nth(3)).to_have_text("1")
        await expect(row.locator("[data-state=SERVING]")).to_have_text("1 SERVING")
    await expect(page.locator('#services tr[data-service="human"] td').nth(2)).to_have_text(
        "Ask a human for facts no tool knows."
    )
    await page.screenshot(path=output_dir / "mesh-light.png", full_page=True)
    await page.get_by_role("button", name="Theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await page.screenshot(path=output_dir / "mesh-dark.png", full_page=True)
    await page.set_viewport_size(PHONE)
    await page.screenshot(path=output_dir / "mesh-phone.png", full_page=True)


async def test_the_mesh_page_follows_a_paused_replica_live(
    page: Page, console_mesh: ConsoleMesh
) -> None:
    row = page.locator('#services tr[data-service="echo"]')
    await expect(row.locator("[data-state=SERVING]")).to_be_visible()
    [runtime] = console_mesh.mesh.services["echo"]
    runtime.pause()
    await expect(row.locator("[data-state=PAUSED]")).to_have_text("1 PAUSED")


async def test_the_pages_are_reached_from_the_keyboard(page: Page) -> None:
    await page.keyboard.press("g")
    await page.keyboard.press("i")
    await expect(page.locator("h1")).to_have_text("Inbox")
    await expect(page.get_by_role("link", name="Inbox")).to_have_attribute("aria-current", "page")
    await page.keyboard.press("Tab")  # "Skip to content" comes first
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(3):  # the brand, then Mesh, Sessions
        await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Sessions")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_have_text("Sessions")
