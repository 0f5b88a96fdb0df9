"""The task view in a real browser: a live timeline in order (also across a gateway
restart), a failed task's error, cancel from the page, child tasks."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright", reason="Playwright for Python is not installed (make install)")

# A browser and a mesh per test, on a shared 2-core machine.
pytestmark = pytest.mark.timeout(300)

from console_support import ConsoleMesh  # noqa: E402
from playwright.async_api import Page, expect  # noqa: E402

from llama_mesh.client import TaskHandle  # noqa: E402
from llama_mesh.v1 import resources_pb2  # noqa: E402
from llama_mesh_gateway import GatewayServer  # noqa: E402


async def timeline(page: Page) -> list[tuple[int, str]]:
    """(sequence, type) of every event the page shows, in the page's order."""
    items = page.locator("#timeline li[data-sequence]")
    rows: list[tuple[int, str]] = []
    for i in range(await items.count()):
        item = items.nth(i)
        sequence = await item.get_attribute("data-sequence")
        kind = await item.get_attribute("data-type")
        assert sequence is not None and kind is not None
        rows.append((int(sequence), kind))
    return rows


async def api_timeline(handle: TaskHandle) -> list[tuple[int, str]]:
    return [(e.sequence, e.type) async for e in handle.events()]


async def step_numbers(page: Page) -> list[int]:
    payloads = page.locator('#timeline li[data-type="Step"] .payload')
    texts = await payloads.all_inner_texts()
    return [int(t.split(":")[1].strip(" }\n")) for t in texts]


async def test_a_task_streams_its_events_into_the_page_live_and_in_order(
    page: Page, console_mesh: ConsoleMesh, output_dir: Path
) -> None:
    session = await console_mesh.mesh.client.create_session()
    handle = await session.create_task("stepped")
    await page.goto(f"{console_mesh.console_url}#/{handle.name}")
    title = page.locator("h1")
    # The first half: three steps, then the task waits (the second half does not exist yet).
    await expect(title).to_have_attribute("data-state", "WAITING_FOR_INPUT")
    await expect(page.locator('#timeline li[data-type="Step"]')).to_have_count(3)
    assert await step_numbers(page) == [0, 1, 2]
    await expect(page.locator("#connection")).to_have_text("· live")
    await page.screenshot(path=output_dir / "task-waiting.png", full_page=True)

    await handle.send_event("HumanResponseEvent", response="go")
    await expect(title).to_have_attribute("data-state", "SUCCEEDED")
    await expect(page.locator('#timeline li[data-type="Step"]')).to_have_count(6)
    assert await step_numbers(page) == [0, 1, 2, 3, 4, 5]
    shown = await timeline(page)
    assert shown == await api_timeline(handle)  # every event, once, in the stream's order
    assert [s for s, _ in shown] == sorted({s for s, _ in shown})
    assert shown[-1][1] == "StopEvent"
    await expect(page.locator("#result pre")).to_have_text('"six steps"')
    await expect(page.locator("#cancel")).to_have_count(0)
    await expect(page.locator("#connection")).to_have_text("· ended")
    await page.screenshot(path=output_dir / "task-succeeded.png", full_page=True)


async def test_the_timeline_resumes_after_the_gateway_restarts_with_no_gap_or_repeat(
    page: Page, console_mesh: ConsoleMesh
) -> None:
    session = await console_mesh.mesh.client.create_session()
    handle = await session.create_task("stepped")
    await page.goto(f"{console_mesh.console_url}#/{handle.name}")
    await expect(page.locator('#timeline li[data-type="Step"]')).to_have_count(3)
    before = await timeline(page)

    gateway = console_mesh.gateway
    port = gateway.port
    await gateway.stop()  # ends the page's stream with UNAVAILABLE
    await expect(page.locator("#connection")).to_have_text("· reconnecting…")
    await handle.send_event("HumanResponseEvent", response="go")  # events the page missed
    async with GatewayServer(console_mesh.mesh.address, port=port):
        await expect(page.locator("h1")).to_have_attribute("data-state", "SUCCEEDED")
        shown = await timeline(page)
    assert shown[: len(before)] == before
    assert shown == await api_timeline(handle)
    assert await step_numbers(page) == [0, 1, 2, 3, 4, 5]


async def test_a_failed_task_shows_its_error_type_message_and_traceback(
    page: Page, console_mesh: ConsoleMesh, output_dir: Path
) -> None:
    session = await console_mesh.mesh.client.create_session()
    handle = await session.create_task("fail", message="the disk is on fire")
    await handle.wait()
    await page.goto(f"{console_mesh.console_url}#/{handle.name}")
    await expect(page.locator("h1")).to_have_attribute("data-state", "FAILED")
    error = page.locator("#error")
    await expect(error.locator(".message")).to_have_text("Boom: the disk is on fire")
    await expect(error.locator(".reason")).to_have_text("Boom")
    await expect(page.locator("#timeline li.final .status .message")).to_have_text(
        "Boom: the disk is on fire"
    )
    # The remote traceback (the task's google.rpc.DebugInfo), where the workflow raised.
    traceback = error.locator("pre.traceback")
    await expect(traceback).to_contain_text('raise Boom(str(ev.get("message", "it broke")))')
    await expect(traceback).to_contain_text("mesh_workflows.py")
    await expect(traceback).to_contain_text("Boom: the disk is on fire")
    await page.screenshot(path=output_dir / "task-failed.png", full_page=True)


async def test_cancel_from_the_page_ends_a_running_task_cancelled(
    page: Page, console_mesh: ConsoleMesh, output_dir: Path
) -> None:
    session = await console_mesh.mesh.client.create_session()
    handle = await session.create_task("stoppable", seconds=3600)
    await page.goto(f"{console_mesh.console_url}#/{handle.name}")
    await expect(page.locator("h1")).to_have_attribute("data-state", "RUNNING")
    await expect(page.locator('#timeline li[data-type="SlowStarted"]')).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Cancel task").click()
    await expect(page.locator("h1")).to_have_attribute("data-state", "CANCELLED")
    task = await handle.wait()
    assert task.state == resources_pb2.TASK_STATE_CANCELLED
    await expect(page.locator("#error .message")).to_contain_text("cancelled from the console")
    await page.screenshot(path=output_dir / "task-cancelled.png", full_page=True)


async def test_child_tasks_show_as_a_tree_with_links_both_ways(
    page: Page, console_mesh: ConsoleMesh, output_dir: Path
) -> None:
    session = await console_mesh.mesh.client.create_session()
    outer = await session.create_task("outer", arg1="hi")
    assert await outer.result() == "hi_result_result"
    [inner] = [t for t in await session.list_tasks() if t.service == "inner"]
    await page.goto(f"{console_mesh.console_url}#/{outer.name}")
    child = page.locator(f'#children li[data-task="{inner.name}"]')
    await expect(child.get_by_role("link")).to_have_text(f"inner · {inner.name.rsplit('/')[-1]}")
    await expect(child.locator("[data-state]")).to_have_text("SUCCEEDED")
    await expect(
        page.locator('#timeline li[data-type="llama_mesh.ChildTaskCreated"]')
    ).to_have_count(1)
    await page.screenshot(path=output_dir / "task-children.png", full_page=True)
    await child.get_by_role("link").click()
    await expect(page.locator("h1")).to_have_attribute("data-state", "SUCCEEDED")
    parent = page.locator("dl.facts dd a").filter(has_text=outer.name.rsplit("/")[-1])
    await expect(parent).to_have_attribute("href", f"#/{outer.name}")
