"""The quickstart's workflows: plain llama-index Workflows, nothing mesh-specific.

`deployment.yaml` serves each of them as a service:

    echo       returns str(arg1) + "_result" (the llama_deploy README's example)
    counter    streams `n` Progress events (and prints them), then returns n
    approval   asks a person (human in the loop), then returns the answer
    inner      the README's nested pair: `outer` awaits `inner`, which runs as a
    outer      child task of its own service, on any replica
"""

from __future__ import annotations

from workflows import Context, Workflow, step
from workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)

from llama_mesh.worker.nested import add_workflows


class EchoWorkflow(Workflow):
    """Returns str(arg1) + "_result"."""

    @step
    async def run_step(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=str(ev.get("arg1")) + "_result")


class Progress(Event):
    step: int
    of: int


class CounterWorkflow(Workflow):
    """Streams `n` Progress events (default 3), then returns n."""

    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        n = int(ev.get("n", 3))
        for i in range(1, n + 1):
            ctx.write_event_to_stream(Progress(step=i, of=n))
            print(f"counted {i} of {n}")  # a log line of this task: `llama-mesh logs`
        return StopEvent(result=n)


class ApprovalWorkflow(Workflow):
    """Asks a person `question` and returns their answer."""

    @step
    async def ask(self, ctx: Context, ev: StartEvent) -> StopEvent:
        response = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix=str(ev.get("question", "Approve?"))),
        )
        return StopEvent(
            result={"question": ev.get("question", "Approve?"), "answer": response.response}
        )


class InnerWorkflow(Workflow):
    """The README's inner workflow."""

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


echo = EchoWorkflow(timeout=60)
counter = CounterWorkflow(timeout=60)
approval = ApprovalWorkflow(timeout=None)
inner = InnerWorkflow(timeout=60)
outer = add_workflows(OuterWorkflow(timeout=60), inner=InnerWorkflow())
