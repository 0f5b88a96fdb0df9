"""core.tasks.cancel_and_wait: stopping a task ends it, and a cancel aimed at the stopper
is never swallowed (what `task.cancel(); with suppress(CancelledError): await task` did)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from llama_mesh.core.tasks import cancel_and_wait


class SlowToEnd:
    """A task that, once cancelled, ends only when told to (cleanup that takes a while)."""

    def __init__(self, ending: BaseException | None = None) -> None:
        self.running = asyncio.Event()
        self.cancel_seen = asyncio.Event()
        self.release = asyncio.Event()
        self.ending = ending
        self.task = asyncio.create_task(self._run(), name="slow-to-end")

    async def _run(self) -> None:
        self.running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancel_seen.set()
            await self.release.wait()
            if self.ending is not None:
                raise self.ending from None
            raise


async def test_a_running_task_is_cancelled_and_waited_for() -> None:
    slow = SlowToEnd()
    await slow.running.wait()
    slow.release.set()

    assert await cancel_and_wait(slow.task) is None
    assert slow.task.cancelled()


async def test_the_stopper_cancelled_while_it_waits_is_cancelled() -> None:
    slow = SlowToEnd()
    await slow.running.wait()
    stopper = asyncio.create_task(cancel_and_wait(slow.task))
    await slow.cancel_seen.wait()  # the stopper waits for the slow task's cleanup

    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert stopper.cancelled()

    # The task, cancelled once, still ends by itself.
    assert not slow.task.done()
    slow.release.set()
    await asyncio.wait((slow.task,))
    assert slow.task.cancelled()


async def test_cleanup_in_a_cancelled_owner_still_waits_for_its_task() -> None:
    # The owner's own cancel was delivered (cancelling() is 1) before its finally runs:
    # that is not a new cancel, so the wait goes through and the cleanup completes.
    slow = SlowToEnd()
    started = asyncio.Event()
    cleaned = asyncio.Event()

    async def owner() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            slow.release.set()
            await cancel_and_wait(slow.task)
            cleaned.set()

    await slow.running.wait()
    owning = asyncio.create_task(owner())
    await started.wait()
    owning.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owning

    assert cleaned.is_set()
    assert slow.task.cancelled()


async def test_a_task_that_returns_when_cancelled_gives_none() -> None:
    running = asyncio.Event()

    async def stops_quietly() -> None:
        running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return

    task = asyncio.create_task(stops_quietly())
    await running.wait()
    assert await cancel_and_wait(task) is None
    assert task.done() and not task.cancelled()


async def test_a_task_that_fails_is_logged_and_returned(caplog: pytest.LogCaptureFixture) -> None:
    slow = SlowToEnd(ending=RuntimeError("closing the watcher failed"))
    await slow.running.wait()
    slow.release.set()

    with caplog.at_level(logging.ERROR, logger="llama_mesh.core.tasks"):
        error = await cancel_and_wait(slow.task)

    assert isinstance(error, RuntimeError)
    assert [r.exc_info[1] for r in caplog.records if r.exc_info] == [error]
    assert "slow-to-end" in caplog.text


async def test_a_task_that_already_failed_is_returned(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise ValueError("bad record")

    task = asyncio.create_task(fails())
    await asyncio.wait((task,))

    with caplog.at_level(logging.ERROR, logger="llama_mesh.core.tasks"):
        error = await cancel_and_wait(task)

    assert isinstance(error, ValueError)
    assert "bad record" in caplog.text


async def test_a_failure_after_the_stopper_left_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slow = SlowToEnd(ending=RuntimeError("failed after the stopper left"))
    await slow.running.wait()
    stopper = asyncio.create_task(cancel_and_wait(slow.task))
    await slow.cancel_seen.wait()
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper

    with caplog.at_level(logging.ERROR, logger="llama_mesh.core.tasks"):
        slow.release.set()
        await asyncio.wait((slow.task,))

    assert "failed after the stopper left" in caplog.text
