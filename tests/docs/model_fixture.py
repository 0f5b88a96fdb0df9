"""The doc-test fixture `scripted-model`: a free port stands for `127.0.0.1:8000`, where
a page's deployment files name their model (`http://127.0.0.1:8000/v1`) and where the
page starts the scripted model itself (`python -m llama_mesh.testing 127.0.0.1:8000`,
docs/agents-api.md), so that the command a reader runs is the one tested.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from docs.workspace import free_port

if TYPE_CHECKING:
    from docs.runner import PageRun

DOC_MODEL = "127.0.0.1:8000"


@contextlib.asynccontextmanager
async def scripted_model(run: PageRun) -> AsyncIterator[None]:
    """Point the workspace's deployment files at a free port, and map the documented
    address to it in the page's commands and output."""
    port = free_port(len(DOC_MODEL.rsplit(":", 1)[1]))
    for path in (run.workspace / "examples").rglob("deployment.yaml"):
        text = path.read_text(encoding="utf-8")
        if DOC_MODEL in text:
            path.write_text(text.replace(DOC_MODEL, f"127.0.0.1:{port}"), encoding="utf-8")
    run.addresses.add(int(DOC_MODEL.rsplit(":", 1)[1]), port)
    yield
