"""The workflows the bench deploys on llama-mesh (services import them with --path bench)."""

from __future__ import annotations

import asyncio
import time

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent

from llama_mesh.worker.nested import add_workflows


class EchoWorkflow(Workflow):
    """Returns str(arg1) + "_result", as in the llama_deploy README."""

    @step
    async def run_step(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=str(ev.get("arg1")) + "_result")


class Tick(Event):
    """Written by StreamWorkflow; `t_ns` is time.time_ns() when it was written."""

    i: int
    t_ns: int


class StreamWorkflow(Workflow):
    """Writes `n` Tick events `gap_ms` apart, then returns n.

    The gap stands for the work between two events; the client measures how long each
    Tick took from write_event_to_stream to its hands (both clocks are this machine's).
    """

    @step
    async def stream(self, ctx: Context, ev: StartEvent) -> StopEvent:
        n = int(ev.get("n", 10))
        gap = float(ev.get("gap_ms", 5.0)) / 1000.0
        for i in range(n):
            ctx.write_event_to_stream(Tick(i=i, t_ns=time.time_ns()))
            await asyncio.sleep(gap)
        return StopEvent(result=n)


class InnerWorkflow(Workflow):
    """The inner workflow of the llama_deploy README's nested example."""

    @step
    async def run_step(self, ev: StartEvent) -> StopEvent:
        arg1 = ev.get("arg1")
        if not arg1:
            raise ValueError("arg1 is required.")
        return StopEvent(result=str(arg1) + "_result")


class OuterWorkflow(Workflow):
    """The README's outer workflow: its `inner` step parameter is the `inner` service."""

    @step
    async def run_step(self, ev: StartEvent, inner: InnerWorkflow) -> StopEvent:
        arg1 = ev.get("arg1")
        if not arg1:
            raise ValueError("arg1 is required.")
        result = await inner.run(arg1=arg1)
        return StopEvent(result=str(result) + "_result")


def outer() -> OuterWorkflow:
    """The outer workflow with its inner one attached (llama_deploy's add_workflows)."""
    return add_workflows(OuterWorkflow(), inner=InnerWorkflow())
