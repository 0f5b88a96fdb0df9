"""The README's quickstart runs and prints what the README says."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


async def test_local_mesh_example_prints_what_the_readme_shows() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "local_mesh.py"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "hello_world_result"
    assert [line.split(" ", 1)[1] for line in lines[1:5]] == [
        "Progress {'step': 0}",
        "Progress {'step': 1}",
        "Progress {'step': 2}",
        "StopEvent {'runs': 1}",
    ]
    assert lines[5] == "{'runs': 2}"
    assert err.decode() == ""  # no warnings on a clean run
    readme = (ROOT / "README.md").read_text()
    for line in lines:
        assert line in readme
