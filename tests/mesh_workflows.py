"""Workflows the tests deploy (importable by replicas in subprocesses too)."""

from __future__ import annotations

import asyncio
from typing import Any

from workflows import Context, Workflow, step
from workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)

from llama_mesh.errors import RetryableError


class EchoWorkflow(Workflow):
    """Returns str(arg1) + "_result", as in the llama_deploy README."""

    @step
    async def run_step(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=str(ev.get("arg1")) + "_result")


class CounterWorkflow(Workflow):
    """Counts its runs in the session's Context."""

    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        count = await ctx.store.get("count", default=0) + 1
        await ctx.store.set("count", count)
        return StopEvent(result=count)


class Progress(Event):
    n: int


class StreamingWorkflow(Workflow):
    """Writes `n` Progress events, then returns n."""

    @step
    async def stream(self, ctx: Context, ev: StartEvent) -> StopEvent:
        n = int(ev.get("n", 5))
        for i in range(n):
            ctx.write_event_to_stream(Progress(n=i))
        return StopEvent(result=n)


class Boom(Exception):
    pass


class FailingWorkflow(Workflow):
    """Raises Boom with the given message."""

    @step
    async def fail(self, ev: StartEvent) -> StopEvent:
        raise Boom(str(ev.get("message", "it broke")))


FLAKY_ATTEMPTS: dict[str, int] = {}


class FlakyWorkflow(Workflow):
    """Fails with a RetryableError on the first attempt for a key, then succeeds."""

    @step
    async def flaky(self, ev: StartEvent) -> StopEvent:
        key = str(ev.get("key"))
        FLAKY_ATTEMPTS[key] = FLAKY_ATTEMPTS.get(key, 0) + 1
        if FLAKY_ATTEMPTS[key] == 1:
            raise RetryableError("transient failure")
        return StopEvent(result=f"ok after {FLAKY_ATTEMPTS[key]}")


class SlowStarted(Event):
    pass


class SlowWorkflow(Workflow):
    """Says it started, then works for `seconds` (simulated work), then answers."""

    @step
    async def slow(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(SlowStarted())
        await asyncio.sleep(float(ev.get("seconds", 1.0)))
        return StopEvent(result=str(ev.get("arg1")) + "_slow")


class TypedStart(StartEvent):
    name: str
    times: int = 1


class TypedWorkflow(Workflow):
    """Takes a typed StartEvent: `name` is required."""

    @step
    async def greet(self, ev: TypedStart) -> StopEvent:
        return StopEvent(result=" ".join([f"hi {ev.name}"] * ev.times))


class ApprovalWorkflow(Workflow):
    """Asks a person, then returns what they said."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        response = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix=str(ev.get("question", "Approve?"))),
        )
        answer: Any = response.response
        return StopEvent(result={"answer": answer})
