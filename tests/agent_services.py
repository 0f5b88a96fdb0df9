"""Tool, human and caller services the tests deploy (importable by replicas in
subprocesses too: `llama-mesh serve service agent_services:secret_tools ...`).

No `from __future__ import annotations`: llama-index reads the tools' annotations (a
tool that takes a `Context` must name the class itself, not a string).
"""

import asyncio
import os
from pathlib import Path
from typing import Any

from llama_index.core.tools import FunctionTool
from llama_index.core.tools.types import adapt_to_async_tool
from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent

from llama_mesh.worker.human_service import HumanService
from llama_mesh.worker.mesh_tools import MeshTools
from llama_mesh.worker.tool_service import ToolService

SECRET_FACT = "The secret fact is: A baby llama is called a 'Cria'."


def get_the_secret_fact() -> str:
    """Returns the secret fact."""
    return SECRET_FACT


def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


async def lookup(city: str) -> dict[str, Any]:
    """Looks up facts about a city."""
    return {"city": city, "population": len(city) * 1000}


def divide(a: float, b: float) -> float:
    """Divides a by b."""
    if b == 0:
        raise ZeroDivisionError("cannot divide by zero")
    return a / b


# Calls of `rendezvous` wait until `RENDEZVOUS_PARTIES` of them have started: two calls
# that both return prove they ran at the same time.
RENDEZVOUS_PARTIES = 2
_arrived: list[asyncio.Event] = []


async def rendezvous(name: str) -> str:
    """Waits for the other parallel call, then returns its name."""
    mine = asyncio.Event()
    _arrived.append(mine)
    if len(_arrived) >= RENDEZVOUS_PARTIES:
        for event in _arrived:
            event.set()
        _arrived.clear()
    await mine.wait()
    return f"{name} met"


def _touch(path: str) -> None:
    Path(path).write_text("cancelled")


class Hanging(Event):
    """Written by `hang` once it runs."""


async def hang(ctx: Context, marker: str = "") -> str:
    """Runs until cancelled; on cancel, touches `marker` (a file path) if given."""
    ctx.write_event_to_stream(Hanging())
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        if marker:
            _touch(marker)
        raise
    return "never"


secret_tools = ToolService(
    [FunctionTool.from_defaults(fn=get_the_secret_fact), add, lookup, divide, rendezvous, hang],
    description="Tools about secrets, sums and cities.",
)

human = HumanService(
    prompt="Please answer this question:\n{input_str}",
    description="Ask a human for facts no tool knows.",
)


class ToolCallerWorkflow(Workflow):
    """Calls tools of the services in `services` (default: secret_tools) through
    MeshTools, as an agent does: `calls` is a list of [tool, arguments]; they run
    concurrently. Returns the text each call gave the model."""

    @step
    async def call(self, ev: StartEvent) -> StopEvent:
        services = ev.get("services") or [os.environ.get("TOOLS_SERVICE", "secret_tools")]
        tools = {
            t.metadata.name: adapt_to_async_tool(t)
            for t in await MeshTools(*services).aretrieve("")
        }
        calls = ev.get("calls") or []
        outputs = await asyncio.gather(
            *(tools[name].acall(**arguments) for name, arguments in calls)
        )
        return StopEvent(result=[{"content": o.content, "is_error": o.is_error} for o in outputs])


class TopicStart(StartEvent):
    topic: str


class DraftWorkflow(Workflow):
    """Drafts a text about a topic."""

    @step
    async def draft(self, ev: TopicStart) -> StopEvent:
        return StopEvent(result=f"Draft about {ev.topic}.")


class TextStart(StartEvent):
    text: str


class PublishWorkflow(Workflow):
    """Publishes a text."""

    @step
    async def publish(self, ev: TextStart) -> StopEvent:
        return StopEvent(result={"published": ev.text})


class BrokenStart(StartEvent):
    text: str


class BrokenWorkflow(Workflow):
    """Fails on every text."""

    @step
    async def publish(self, ev: BrokenStart) -> StopEvent:
        raise ValueError(f"cannot handle {ev.text!r}")


class FactsAndJokes(StartEvent):
    facts: str
    jokes: str


class CombineWorkflow(Workflow):
    """Puts facts and jokes together."""

    @step
    async def combine(self, ev: FactsAndJokes) -> StopEvent:
        return StopEvent(result=f"{ev.facts} / {ev.jokes}")
