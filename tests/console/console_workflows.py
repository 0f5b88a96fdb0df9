"""Workflows the console tests deploy."""

from __future__ import annotations

from workflows import Context, Workflow, step
from workflows.events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent


class Step(Event):
    n: int


class SteppedWorkflow(Workflow):
    """Streams Step(0..2), waits for a `go` HumanResponseEvent, streams Step(3..5).

    The wait splits the stream in two, so a test sees the first half in the page
    before the second half exists: the page shows events live, not a replay.
    """

    @step
    async def run_steps(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for n in range(3):
            ctx.write_event_to_stream(Step(n=n))
        await ctx.wait_for_event(
            HumanResponseEvent, waiter_event=InputRequiredEvent(prefix="go on?"), timeout=None
        )
        for n in range(3, 6):
            ctx.write_event_to_stream(Step(n=n))
        return StopEvent(result="six steps")
