"""Components in child processes, ready when they print their JSON ready line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from llama_mesh.supervisor import read_ready_line

TESTS = Path(__file__).resolve().parent
CLI = Path(sys.executable).parent / "llama-mesh"


@contextlib.asynccontextmanager
async def component(
    *args: str, ready_timeout: float = 30.0
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, Any]]]:
    """Run `llama-mesh ARGS` and yield (process, ready line); stop it on exit."""
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    process = await asyncio.create_subprocess_exec(
        str(CLI), *args, stdout=asyncio.subprocess.PIPE, stderr=None, env=env
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(ready_timeout):
            ready = await read_ready_line(process.stdout)
        if ready is None:
            raise RuntimeError(f"llama-mesh {' '.join(args)} exited before ready")
        yield process, ready
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(15):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
