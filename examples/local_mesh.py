"""llama-mesh in one process: embedded NATS, a control plane and two services.

Run it with:  .venv/bin/python examples/local_mesh.py
"""

from __future__ import annotations

import asyncio

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent

from llama_mesh.launch.local import LocalMesh


class EchoWorkflow(Workflow):
    @step
    async def run_step(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=str(ev.get("arg1")) + "_result")


class Progress(Event):
    step: int


class CountingWorkflow(Workflow):
    """Counts its runs in the session's Context and reports progress."""

    @step
    async def count(self, ctx: Context, ev: StartEvent) -> StopEvent:
        runs = await ctx.store.get("runs", default=0) + 1
        await ctx.store.set("runs", runs)
        for i in range(3):
            ctx.write_event_to_stream(Progress(step=i))
        return StopEvent(result={"runs": runs})


async def main() -> None:
    # embedded nats-server + control plane + one replica per workflow, all stopped on exit
    async with LocalMesh({"echo": EchoWorkflow(), "counter": CountingWorkflow()}) as mesh:
        session = await mesh.client.create_session()
        print(await session.run("echo", arg1="hello_world"))

        task = await session.create_task("counter")
        async for event in task.events():
            print(event.sequence, event.type, event.payload)
        print(await session.run("counter"))  # the session remembers: runs == 2


if __name__ == "__main__":
    asyncio.run(main())
