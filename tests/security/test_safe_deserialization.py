"""A Context restores only the workflow's own types: a class name planted in task
input that the workflow keeps in its Context is a typed error, never an import."""

from __future__ import annotations

import sys

import pytest
from pydantic import BaseModel
from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent

from llama_mesh.core.errors import TaskFailedError
from llama_mesh.launch.local import LocalMesh

PLANTED = "security.planted_module.Planted"  # importable: tests/ is on sys.path


class Note(BaseModel):
    text: str


class KeepingWorkflow(Workflow):
    """Keeps the last input value, and a Note it declares, in the session's Context."""

    context_types = (Note,)

    @step
    async def keep(self, ctx: Context, ev: StartEvent) -> StopEvent:
        previous = await ctx.store.get("value", default=None)
        await ctx.store.set("value", ev.get("value"))
        await ctx.store.set("note", Note(text="declared types still restore"))
        return StopEvent(result={"previous": previous})


async def test_a_planted_class_name_is_not_imported(tmp_path: object) -> None:
    sys.modules.pop("security.planted_module", None)
    payload = {"__is_pydantic": True, "qualified_name": PLANTED, "value": {"value": 1}}
    async with LocalMesh({"keeper": KeepingWorkflow()}) as mesh:
        session = await mesh.client.create_session()
        assert await session.run("keeper", value=payload) == {"previous": None}
        with pytest.raises(TaskFailedError) as failed:
            await session.run("keeper", value="next")
        assert failed.value.error_type == "ContextTypeNotAllowedError"
        assert PLANTED in failed.value.message
        assert "security.planted_module" not in sys.modules
        # Declared types come back: a session without the planted value works.
        other = await mesh.client.create_session()
        await other.run("keeper", value="a")
        assert await other.run("keeper", value="b") == {"previous": "a"}
