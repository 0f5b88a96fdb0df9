"""An agent session in a real browser: the transcript with its tool call folded, the
answer streaming in token by token, and the session's tokens against its budget."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("playwright", reason="Playwright for Python is not installed (make install)")

# A browser and a mesh per test, on a shared 2-core machine.
pytestmark = pytest.mark.timeout(300)

from console_support import ConsoleMesh  # noqa: E402
from playwright.async_api import Page, expect  # noqa: E402

from llama_mesh.testing import Pause, Reply, ToolCall, Usage  # noqa: E402
from llama_mesh.v1 import resources_pb2  # noqa: E402


async def test_the_transcript_shows_the_tool_call_and_the_answer_as_it_streams(
    page: Page, console_mesh: ConsoleMesh, output_dir: Path
) -> None:
    pause = Pause()
    console_mesh.model.script(
        Reply(tool_calls=[ToolCall("add", {"a": 2, "b": 3})], usage=Usage(30, 6)),
        Reply(chunks=["2 + ", "3 ", pause, "= ", "5"], usage=Usage(45, 4)),
    )
    session = await console_mesh.mesh.client.create_session(token_budget=1000)
    handle = await session.create_task("assistant", user_msg="what is 2 + 3?")
    await page.goto(f"{console_mesh.console_url}#/agents/{session.name}")
    turn = page.locator(f'#transcript .turn[data-task="{handle.name}"]')
    await expect(turn.locator(".bubble.user")).to_have_text("what is 2 + 3?")
    call = turn.locator('details.tool[data-tool="add"]')
    await expect(call.locator("summary")).to_have_text('tool add({"a":2,"b":3}) → 5')
    await expect(call).not_to_have_attribute("open", "")  # folded until opened
    # The model holds the rest of its answer: what it sent so far is on the page.
    answer = turn.locator(".bubble.assistant .step .text").last
    await expect(answer).to_have_text("2 + 3 ")
    assert (await handle.get()).state == resources_pb2.TASK_STATE_RUNNING
    await expect(turn).not_to_have_attribute("data-state", "SUCCEEDED")
    await page.screenshot(path=output_dir / "agent-streaming.png", full_page=True)

    pause.release()
    await expect(turn).to_have_attribute("data-state", "SUCCEEDED")
    await expect(answer).to_have_text("2 + 3 = 5")
    await expect(page.locator("#session-usage .usage")).to_have_attribute("data-used", "85")
    await expect(page.locator("#session-usage")).to_contain_text("85 / 1000 tokens")
    await call.locator("summary").click()
    await expect(call.locator(".tool-arguments")).to_have_text('{\n  "a": 2,\n  "b": 3\n}')
    await expect(call.locator(".tool-result")).to_have_text("5")
    await page.screenshot(path=output_dir / "agent-done.png", full_page=True)
