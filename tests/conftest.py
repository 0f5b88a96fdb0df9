"""Fixtures: a real nats-server per test, and real meshes built on it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llama_mesh.launch.nats_server import EmbeddedNats

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture
async def nats(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    async with EmbeddedNats.start(tmp_path / "nats") as server:
        yield server
