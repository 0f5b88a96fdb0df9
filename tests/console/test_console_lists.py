"""Sessions and tasks in a real browser: lists paginated by the API, filtered by
service and state, with links to each task."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright", reason="Playwright for Python is not installed (make install)")

# A browser and a mesh per test, on a shared 2-core machine.
pytestmark = pytest.mark.timeout(300)

from console_support import ConsoleMesh  # noqa: E402
from playwright.async_api import Page, expect  # noqa: E402


async def test_tasks_are_filtered_by_service_and_state_and_paginated_by_the_server(
    page: Page, console_mesh: ConsoleMesh, output_dir: Path
) -> None:
    client = console_mesh.mesh.client
    session = await client.create_session(labels={"team": "docs"})
    echoes = [await session.create_task("echo", arg1=str(i)) for i in range(23)]
    failed = await session.create_task("fail", message="no")
    for handle in [*echoes, failed]:
        await handle.wait()

    await page.goto(f"{console_mesh.console_url}#/tasks?service=echo")
    rows = page.locator("#tasks tbody tr[data-task]")
    await expect(rows).to_have_count(20)  # one page of the API's
    await expect(page.locator("#filter-service")).to_have_value("echo")
    first_page = await rows.evaluate_all("rows => rows.map(r => r.dataset.task)")
    await page.screenshot(path=output_dir / "tasks.png", full_page=True)
    await page.get_by_role("button", name="Next →").click()
    await expect(rows).to_have_count(3)
    second_page = await rows.evaluate_all("rows => rows.map(r => r.dataset.task)")
    assert sorted(first_page + second_page) == sorted(h.name for h in echoes)
    await expect(page.get_by_role("button", name="Next →")).to_be_disabled()

    await page.locator("#filter-state").select_option("FAILED")
    await page.locator("#filter-service").select_option("")
    await expect(page).to_have_url(f"{console_mesh.console_url}#/tasks?state=FAILED")
    await expect(rows).to_have_count(1)
    await rows.first.get_by_role("link").first.click()
    await expect(page.locator("h1")).to_have_attribute("data-state", "FAILED")
    assert page.url.endswith(f"#/{failed.name}")


async def test_sessions_are_listed_and_searched_with_their_labels(
    page: Page, console_mesh: ConsoleMesh, output_dir: Path
) -> None:
    client = console_mesh.mesh.client
    docs = await client.create_session(labels={"team": "docs"})
    ops = await client.create_session(labels={"team": "ops"})
    await page.goto(f"{console_mesh.console_url}#/sessions")
    await expect(page.locator(f'#sessions tr[data-session="{docs.name}"]')).to_be_visible()
    await expect(page.locator(f'#sessions tr[data-session="{ops.name}"]')).to_be_visible()
    await page.get_by_label("Search this page by id or label").fill("team=ops")
    await expect(page.locator("#sessions tbody tr")).to_have_count(1)
    await expect(page.locator(f'#sessions tr[data-session="{ops.name}"]')).to_be_visible()
    await page.screenshot(path=output_dir / "sessions.png", full_page=True)
    await page.locator(f'#sessions tr[data-session="{ops.name}"] a').click()
    await expect(page.locator("h1")).to_have_text(f"Session {ops.id}")
