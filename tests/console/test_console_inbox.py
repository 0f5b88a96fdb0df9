"""The inbox in a real browser: every task waiting for a person, answered from a form
generated from the expected event's JSON Schema; the inbox follows the mesh live."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright", reason="Playwright for Python is not installed (make install)")

# A browser and a mesh per test, on a shared 2-core machine.
pytestmark = pytest.mark.timeout(300)

from console_support import ConsoleMesh  # noqa: E402
from playwright.async_api import Page, expect  # noqa: E402

from llama_mesh.client import TaskHandle  # noqa: E402


async def until_waiting(handle: TaskHandle) -> None:
    async for event in handle.events():
        if event.state == "WAITING_FOR_INPUT":
            return
    raise AssertionError(f"{handle.name} finished without asking")


async def test_a_human_task_is_answered_from_the_inbox_and_leaves_it(
    page: Page, console_mesh: ConsoleMesh, output_dir: Path
) -> None:
    client = console_mesh.mesh.client
    asked = await (await client.create_session()).create_task("human", question="Which port?")
    await until_waiting(asked)
    await page.goto(f"{console_mesh.console_url}#/inbox")
    item = page.locator(f'#inbox article[data-task="{asked.name}"]')
    await expect(item.locator(".prompt")).to_have_text("Please answer this question:\nWhich port?")
    await page.screenshot(path=output_dir / "inbox.png", full_page=True)

    await item.get_by_label("Answer", exact=True).fill("4222, as usual")
    await item.get_by_role("button", name="Send HumanResponseEvent").click()
    await expect(item).to_have_count(0)
    assert await asked.result() == "4222, as usual"
    await expect(page.locator("#inbox-empty")).to_be_visible()


async def test_the_form_follows_the_schema_of_the_event_the_task_waits_for(
    page: Page, console_mesh: ConsoleMesh, output_dir: Path
) -> None:
    client = console_mesh.mesh.client
    review = await (await client.create_session()).create_task("review", draft="draft 3")
    await until_waiting(review)
    await page.goto(f"{console_mesh.console_url}#/inbox")
    item = page.locator(f'#inbox article[data-task="{review.name}"]')
    await expect(item.locator(".prompt")).to_have_text("Review draft 3")
    await expect(item.get_by_label("Approved", exact=True)).to_have_attribute("type", "checkbox")
    await expect(item.get_by_label("Rating", exact=True)).to_have_attribute("type", "number")
    await expect(item.locator("select[name=verdict] option")).to_have_text(
        ["accept", "revise", "reject"]
    )
    await item.get_by_label("Approved", exact=True).check()
    await item.get_by_label("Rating", exact=True).fill("4")
    await item.get_by_label("Verdict", exact=True).select_option(label="revise")
    await item.get_by_label("Note", exact=True).fill("tighten the intro")
    await page.screenshot(path=output_dir / "inbox-schema-form.png", full_page=True)
    await item.get_by_role("button", name="Send Review").click()
    await expect(item).to_have_count(0)
    assert await review.result() == {
        "approved": True,
        "rating": 4,
        "verdict": "revise",
        "note": "tighten the intro",
    }


async def test_the_inbox_shows_new_questions_and_drops_ones_answered_elsewhere(
    page: Page, console_mesh: ConsoleMesh
) -> None:
    client = console_mesh.mesh.client
    await page.goto(f"{console_mesh.console_url}#/inbox")
    await expect(page.locator("#inbox-empty")).to_be_visible()
    first = await (await client.create_session()).create_task("human", question="one?")
    second = await (await client.create_session()).create_task("stepped")
    for handle in (first, second):
        await expect(page.locator(f'#inbox article[data-task="{handle.name}"]')).to_be_visible()
    await first.send_event("HumanResponseEvent", response="answered by the CLI")
    await expect(page.locator(f'#inbox article[data-task="{first.name}"]')).to_have_count(0)
    await expect(page.locator(f'#inbox article[data-task="{second.name}"]')).to_be_visible()
