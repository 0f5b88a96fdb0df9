"""Workflows of the fault tests (importable by replicas in subprocesses too)."""

from __future__ import annotations

from workflows import Context, Workflow, step
from workflows.events import StartEvent, StopEvent

# Runs of a workflow in this process, for tests that count executions.
RUNS: list[object] = []


class AppendWorkflow(Workflow):
    """Appends its `item` to a list kept in the session's Context; returns the list."""

    @step
    async def append(self, ctx: Context, ev: StartEvent) -> StopEvent:
        RUNS.append(ev.get("item"))
        items = [*await ctx.store.get("items", default=[]), ev.get("item")]
        await ctx.store.set("items", items)
        return StopEvent(result=items)
