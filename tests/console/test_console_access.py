"""The console at a phone's width and from the keyboard alone, in a real browser: every
page fits the screen (only tables scroll sideways, inside their box), its text stays
readable, and a question is found and answered without a mouse, the focus always
visible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright", reason="Playwright for Python is not installed (make install)")

# A browser and a mesh per test, on a shared 2-core machine.
pytestmark = pytest.mark.timeout(300)

from console_support import DESKTOP, PHONE, ConsoleMesh  # noqa: E402
from playwright.async_api import Page, expect  # noqa: E402

from llama_mesh.client import TaskHandle  # noqa: E402

# What sticks out of the screen sideways, and what is printed too small to read.
# A `.scroll` box may hold wider content (a table scrolls inside it); the box itself
# must fit.
LAYOUT = """() => {
  const width = document.documentElement.clientWidth;
  const classes = (el) => typeof el.className === "string" && el.className.trim()
    ? "." + el.className.trim().replace(/ +/g, ".") : "";
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + classes(el);
  const outside = [], tiny = [];
  for (const el of document.querySelectorAll("body, body *")) {
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height) continue;  // not shown
    if (el.closest(".skip") && el !== document.activeElement) continue;  // off screen until focused
    const scroller = el.parentElement && el.parentElement.closest(".scroll");
    if (!scroller && (box.left < -1 || box.right > width + 1)) {
      outside.push(`${name(el)} spans ${Math.round(box.left)}..${Math.round(box.right)}`);
    }
    const text = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (text && !el.closest(".scroll")) {
      // A word too long for its line runs out of its box (the box fits, its text does not).
      const range = document.createRange();
      range.selectNodeContents(el);
      const run = range.getBoundingClientRect();
      if (run.right > width + 1) {
        outside.push(`${name(el)}'s text runs to ${Math.round(run.right)}`);
      }
    }
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (text && size < 12) tiny.push(`${name(el)} at ${size}px`);
  }
  return {width, scrollWidth: document.documentElement.scrollWidth, outside, tiny};
}"""

# The focused element: what it is, whether it shows, and its focus ring.
FOCUSED = """() => {
  const el = document.activeElement;
  const box = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  return {
    what: el.tagName.toLowerCase() + " "
      + (el.getAttribute("aria-label") || el.textContent || el.name || "").trim().slice(0, 40),
    shown: box.width > 0 && box.height > 0 && box.bottom > 0 && box.right > 0,
    ring: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2,
  };
}"""


async def until_waiting(handle: TaskHandle) -> None:
    async for event in handle.events():
        if event.state == "WAITING_FOR_INPUT":
            return
    raise AssertionError(f"{handle.name} finished without asking")


async def fits(page: Page, where: str) -> None:
    layout: dict[str, Any] = await page.evaluate(LAYOUT)
    assert layout["scrollWidth"] <= layout["width"], f"{where} scrolls sideways: {layout}"
    assert not layout["outside"], f"{where}: off the screen: {layout['outside']}"
    assert not layout["tiny"], f"{where}: too small to read: {layout['tiny']}"


async def test_every_page_fits_a_phone_and_keeps_what_matters(
    page: Page, console_mesh: ConsoleMesh, output_dir: Path
) -> None:
    client = console_mesh.mesh.client
    session = await client.create_session(labels={"team": "a-rather-long-team-name"})
    done = await session.create_task("echo", arg1="x" * 200)
    await done.wait()
    failed = await session.create_task("fail", message="the disk is on fire " * 8)
    await failed.wait()
    asked = await session.create_task("human", question="Which port? " * 10)
    await until_waiting(asked)

    await page.set_viewport_size(PHONE)
    pages = {
        "mesh": ("#/", "#services tbody tr"),
        "sessions": ("#/sessions", "main table tbody tr"),
        "session": (f"#/{session.name}", "main table tbody tr"),
        "tasks": ("#/tasks", "main table tbody tr"),
        "task": (f"#/{done.name}", "#timeline li.final"),
        "failed-task": (f"#/{failed.name}", "#error pre.traceback"),
        "inbox": ("#/inbox", f'#inbox article[data-task="{asked.name}"]'),
        "agents": ("#/agents", "#agents h2"),
    }
    for name, (path, shown) in pages.items():
        await page.goto(f"{console_mesh.console_url}{path}")
        await expect(page.locator(shown).first).to_be_visible()
        await page.screenshot(path=output_dir / f"{name}-phone.png", full_page=True)
        await fits(page, name)
        # The pages stay one tap away: every link of the navigation is on the screen.
        for link in ("Mesh", "Sessions", "Tasks", "Inbox", "Agents"):
            await expect(page.get_by_role("link", name=link, exact=True)).to_be_in_viewport()

    # The Mesh page keeps each service's name, kind and state, and drops its description.
    await page.goto(console_mesh.console_url)
    echo = page.locator('#services tr[data-service="echo"]')
    await expect(echo.locator("td").nth(0)).to_be_visible()
    await expect(echo.locator("td").nth(1)).to_have_text("workflow")
    await expect(echo.locator("[data-state=SERVING]")).to_be_in_viewport()
    await expect(echo.locator("td.description")).to_be_hidden()
    await page.set_viewport_size(DESKTOP)
    await expect(echo.locator("td.description")).to_be_visible()


async def test_a_question_is_found_and_answered_from_the_keyboard_alone(
    page: Page, console_mesh: ConsoleMesh
) -> None:
    session = await console_mesh.mesh.client.create_session()
    asked = await session.create_task("human", question="Which port?")
    await until_waiting(asked)
    await page.keyboard.press("g")
    await page.keyboard.press("i")
    item = page.locator(f'#inbox article[data-task="{asked.name}"]')
    await expect(item).to_be_visible()
    answer = item.get_by_label("Answer", exact=True)

    path: list[str] = []
    for _ in range(30):
        await page.keyboard.press("Tab")
        focused: dict[str, Any] = await page.evaluate(FOCUSED)
        path.append(focused["what"])
        assert focused["shown"], f"the focus went to something not shown: {path}"
        assert focused["ring"], f"no visible focus ring on {focused['what']!r}: {path}"
        if await answer.evaluate("el => el === document.activeElement"):
            break
    else:
        raise AssertionError(f"Tab never reached the answer field: {path}")

    # Typed into a form, "g" then "i" is text, not a jump to the inbox.
    await page.keyboard.type("gi: 4222")
    await page.keyboard.press("Tab")
    send = item.get_by_role("button", name="Send HumanResponseEvent")
    await expect(send).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(item).to_have_count(0)
    assert await asked.result() == "gi: 4222"
    await expect(page.locator("#inbox-empty")).to_be_visible()
