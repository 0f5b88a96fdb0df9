"""A `serve` process whose supervisor is gone exits even if its shutdown hangs
(launch/signals.py): `up` killed with SIGKILL must leave no process behind."""

from __future__ import annotations

import asyncio
import sys
import textwrap

import pytest

from llama_mesh.launch import signals

# A process that stops when its stdin closes, then hangs in its shutdown: a task that
# ignores its cancellation keeps asyncio.run from returning (as a stuck client library
# would).
HANGS_ON_STOP = textwrap.dedent(
    """
    import asyncio
    from llama_mesh.launch import signals

    signals.ORPHAN_GRACE = 0.5

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                pass

    async def main() -> None:
        asyncio.get_running_loop().create_task(stubborn())
        waiting = asyncio.create_task(signals.until_signalled(watch_stdin=True))
        await asyncio.sleep(0)  # one step: its signal handlers are in place
        print("ready", flush=True)
        await waiting

    asyncio.run(main())
    """
)


async def _started() -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HANGS_ON_STOP,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert await process.stdout.readline() == b"ready\n"
    return process


@pytest.mark.timeout(60)
async def test_an_orphan_whose_shutdown_hangs_exits_after_its_grace() -> None:
    process = await _started()
    assert process.stdin is not None
    process.stdin.close()  # the supervisor is gone
    async with asyncio.timeout(30):
        code = await process.wait()
    assert code == signals.ORPHAN_EXIT_CODE


@pytest.mark.timeout(60)
async def test_a_process_told_to_stop_is_not_cut_short() -> None:
    # SIGTERM first (how `up` stops its children): no deadline is armed, so a slow
    # shutdown (a replica draining) is the supervisor's to time, not this one's.
    process = await _started()
    process.terminate()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2):
            await process.wait()
    process.kill()
    assert await process.wait() == -9
