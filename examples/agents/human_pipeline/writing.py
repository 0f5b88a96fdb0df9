"""The workflows of the human pipeline example: a draft, then (after a person's review)
its publication."""

from __future__ import annotations

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent


class Topic(StartEvent):
    topic: str


class DraftWorkflow(Workflow):
    """Writes a first draft about a topic."""

    @step
    async def write(self, ev: Topic) -> StopEvent:
        return StopEvent(result=f"A first draft about {ev.topic}.")


class Text(StartEvent):
    text: str


class PublishWorkflow(Workflow):
    """Publishes a reviewed text."""

    @step
    async def publish(self, ev: Text) -> StopEvent:
        return StopEvent(result={"published": ev.text, "words": len(ev.text.split())})


draft = DraftWorkflow()
publish = PublishWorkflow()
