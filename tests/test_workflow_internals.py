"""The private parts of llama-index-workflows that llama-mesh relies on still work.

llama_mesh/worker/workflow_internals.py is the only module that touches them; these
tests run real workflows through each of its functions, so an upgrade of the library
that changes what they reach into fails here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from workflows import Workflow, step
from workflows.events import Event, StartEvent, StopEvent
from workflows.resource import Resource

from llama_mesh.worker.workflow_internals import always_cached, resource_values, steps


@dataclass
class Tool:
    made_by: str


def make_tool() -> Tool:
    return Tool("factory")


class Ping(Event):
    text: str


class Probe(Workflow):
    @step
    async def start(
        self, ev: StartEvent, tool: Annotated[Tool, Resource(make_tool, cache=False)]
    ) -> Ping:
        return Ping(text=tool.made_by)

    @step
    async def answer(self, ev: Ping) -> StopEvent:
        return StopEvent(result=ev.text)


class WithFreeStep(Workflow):
    @step
    async def start(self, ev: StartEvent) -> Ping:
        return Ping(text="free")


@step(workflow=WithFreeStep)
async def free_answer(ev: Ping) -> StopEvent:
    return StopEvent(result=ev.text)


def test_steps_are_the_methods_and_free_functions_with_their_configs() -> None:
    found = {s.function.__name__: s for s in steps(Probe())}
    assert sorted(found) == ["answer", "start"]
    assert found["answer"].config.accepted_events == [Ping]
    assert found["start"].config.accepted_events == [StartEvent]
    assert found["start"].config.return_types == [Ping]
    assert found["answer"].config.return_types == [StopEvent]
    assert found["start"].config.context_state_type is None
    [tool] = found["start"].config.resources
    assert (tool.name, tool.type_annotation) == ("tool", Tool)

    free = {s.function.__name__: s for s in steps(WithFreeStep())}
    assert sorted(free) == ["free_answer", "start"]
    assert free["free_answer"].config.accepted_events == [Ping]


async def test_a_resource_value_reaches_the_steps_of_that_instance_only() -> None:
    given, untouched = Probe(), Probe()
    [tool] = {s.function.__name__: s for s in steps(given)}["start"].config.resources
    assert await given.run() == "factory"  # not cached: the factory makes it

    resource_values(given)[tool.resource.name] = Tool("given")
    always_cached(tool.resource)
    assert await given.run() == "given"
    assert await untouched.run() == "factory"
