"""Workflows the tests deploy (importable by replicas in subprocesses too)."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Annotated, Any

from workflows import Context, Workflow, step
from workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)
from workflows.resource import Resource

from llama_mesh.core.errors import RetryableError, TaskFailedError
from llama_mesh.worker.nested import add_workflows


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
            # An Event keeps fields it does not declare; mypy knows only declared ones.
            waiter_event=InputRequiredEvent(prefix=str(ev.get("question", "Approve?"))),  # type: ignore[call-arg]
        )
        answer: Any = response.response
        return StopEvent(result={"answer": answer})


# ---------------------------------------------------------------- nested workflows


class InnerWorkflow(Workflow):
    @step
    async def run_step(self, ev: StartEvent) -> StopEvent:
        arg1 = ev.get("arg1")
        return StopEvent(result=str(arg1) + "_result")


class OuterWorkflow(Workflow):
    """The llama_deploy README's outer workflow: a plain `inner` parameter."""

    @step
    async def run_step(self, ev: StartEvent, inner: InnerWorkflow) -> StopEvent:
        arg1 = ev.get("arg1")
        result = await inner.run(arg1=arg1)
        return StopEvent(result=str(result) + "_result")


def make_outer() -> OuterWorkflow:
    outer = OuterWorkflow()
    add_workflows(outer, inner=InnerWorkflow())
    return outer


class AnnotatedOuterWorkflow(Workflow):
    """The workflows-2.x way: the inner workflow as an annotated step resource."""

    @step
    async def run_step(
        self, ev: StartEvent, inner: Annotated[InnerWorkflow, Resource(InnerWorkflow)]
    ) -> StopEvent:
        result = await inner.run(arg1=ev.get("arg1"))
        return StopEvent(result=str(result) + "_annotated")


# What workflows saw when they were stopped, keyed by the `tag` of their input.
CANCELLED_TAGS: set[str] = set()


class StoppableWorkflow(Workflow):
    """Works for `seconds`, noting in CANCELLED_TAGS if it is stopped first."""

    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(SlowStarted())
        try:
            await asyncio.sleep(float(ev.get("seconds", 30.0)))
        except asyncio.CancelledError:
            CANCELLED_TAGS.add(str(ev.get("tag")))
            raise
        return StopEvent(result="finished")


class ParentOfStoppable(Workflow):
    """Calls the deployed `stoppable` service and waits for it."""

    @step
    async def call(
        self,
        ctx: Context,
        ev: StartEvent,
        stoppable: Annotated[StoppableWorkflow, Resource(StoppableWorkflow)],
    ) -> StopEvent:
        ctx.write_event_to_stream(SlowStarted())
        try:
            result = await stoppable.run(tag=ev.get("tag"), seconds=30.0)
        except asyncio.CancelledError:
            CANCELLED_TAGS.add(f"parent:{ev.get('tag')}")
            raise
        return StopEvent(result=result)


class ParentOfFailing(Workflow):
    """Calls the deployed `fail` service and reports the child's error type."""

    @step
    async def call(
        self, ev: StartEvent, fail: Annotated[FailingWorkflow, Resource(FailingWorkflow)]
    ) -> StopEvent:
        try:
            await fail.run(message="child broke")
        except TaskFailedError as err:
            return StopEvent(result={"child_error": err.error_type, "message": err.message})
        return StopEvent(result="no error")


def read_missing_key(data: dict[str, Any]) -> Any:
    """A helper a step calls: the task's remote traceback must show this frame."""
    return data["missing_key"]


class HelperFailingWorkflow(Workflow):
    """Its step calls a helper that raises KeyError; with `wrap`, the step raises a
    RuntimeError from it (an exception chain)."""

    @step
    async def lookup(self, ev: StartEvent) -> StopEvent:
        try:
            return StopEvent(result=read_missing_key({}))
        except KeyError as err:
            if ev.get("wrap"):
                raise RuntimeError("the lookup failed") from err
            raise


def announce(word: str) -> None:
    """A helper of the step that prints (its line is the task's, like the step's)."""
    print(f"helper saw {word}")


class PrintingWorkflow(Workflow):
    """Prints (on stdout and stderr) and logs (info and debug) what it is given, then
    returns it."""

    @step
    async def speak(self, ev: StartEvent) -> StopEvent:
        word = str(ev.get("word"))
        print(f"step says {word}")
        announce(word)
        logger = logging.getLogger("mesh_workflows.printing")
        logger.info("logged %s", word)
        logger.debug("debugged %s", word)
        print(f"complained {word}", file=sys.stderr)
        return StopEvent(result=word)
