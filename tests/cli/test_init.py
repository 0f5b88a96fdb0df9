"""`llama-mesh init NAME` writes a starter that is valid and whose test passes as it is
(issue 16, the first hour)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .conftest import cli
from processes import run


@pytest.mark.timeout(300)
async def test_init_writes_a_starter_that_checks_and_passes_its_test(tmp_path: Path) -> None:
    made = await cli("init", "hello", cwd=tmp_path)
    assert made.code == 0, made.stderr
    here = tmp_path / "hello"
    assert sorted(p.name for p in here.iterdir()) == [
        "deployment.yaml",
        "hello.py",
        "test_hello.py",
    ]
    assert "next: cd hello && llama-mesh check && llama-mesh up" in made.stdout

    checked = await cli("check", cwd=here)
    assert checked.code == 0, checked.stderr
    assert checked.stdout == "deployment.yaml: deployment 'hello' is valid; services: hello x1\n"

    # Its own test, run as a user would: pytest in the new directory (rootdir there).
    (here / "pytest.ini").write_text("[pytest]\n")
    tested = await run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "test_hello.py",
        cwd=here,
        timeout=240,
    )
    assert tested.code == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout

    again = await cli("init", "hello", cwd=tmp_path)
    assert again.code == 2 and "not overwriting" in again.stderr
    bad = await cli("init", "Hello-World", cwd=tmp_path)
    assert bad.code == 2 and "is not a name for a service and a module" in bad.stderr
