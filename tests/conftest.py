"""Fixtures: a real nats-server per test, and real meshes built on it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from llama_mesh.launch.nats_server import EmbeddedNats

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

if TYPE_CHECKING:
    from paused_echo import PausedEcho


@pytest.fixture
async def nats(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    async with EmbeddedNats.start(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def paused_echo(nats: EmbeddedNats) -> AsyncIterator[PausedEcho]:
    """A LocalMesh whose echo replicas are paused, and one echo task in it: the test
    plays the replica (paused_echo.py)."""
    # Imported here: LocalMesh brings llama-index in (seconds), which most tests never load.
    from paused_echo import paused_echo_mesh

    async with paused_echo_mesh(nats.url) as mesh:
        yield mesh
