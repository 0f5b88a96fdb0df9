"""Fixtures for agent tests: the scripted model server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from llama_mesh.testing import ScriptedModel


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
async def model_url(model: ScriptedModel) -> AsyncIterator[str]:
    async with model.serve() as url:
        yield url
