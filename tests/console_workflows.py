"""Workflows the console tests (tests/console) deploy."""

from __future__ import annotations

from typing import Any, Literal

from workflows import Context, Workflow, step
from workflows.events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent


class Step(Event):
    n: int


class SteppedWorkflow(Workflow):
    """Streams Step(0..2), asks to go on, and on a HumanResponseEvent streams Step(3..5).

    The question splits the stream in two, so a test sees the first half in the page
    before the second half exists: the page shows events live, not a replay. (Two
    steps, not `ctx.wait_for_event`, which runs its step again from the top.)
    """

    @step
    async def first_half(self, ctx: Context, ev: StartEvent) -> InputRequiredEvent:
        for n in range(3):
            ctx.write_event_to_stream(Step(n=n))
        # InputRequiredEvent's fields are free-form: its payload is this dict.
        fields: dict[str, Any] = {"prefix": "go on?"}
        return InputRequiredEvent(**fields)

    @step
    async def second_half(self, ctx: Context, ev: HumanResponseEvent) -> StopEvent:
        for n in range(3, 6):
            ctx.write_event_to_stream(Step(n=n))
        return StopEvent(result="six steps")


class Review(HumanResponseEvent):
    """A reviewer's verdict: the event ReviewWorkflow waits for (a HumanResponseEvent,
    which a workflow may consume without producing it)."""

    response: str = ""
    approved: bool
    rating: int
    verdict: Literal["accept", "revise", "reject"]
    note: str = ""


def review_schema() -> dict[str, Any]:
    """Review's JSON Schema without the inherited free-text `response`."""
    schema = Review.model_json_schema()
    del schema["properties"]["response"]
    return schema


REVIEW_SCHEMA = review_schema()


class ReviewWorkflow(Workflow):
    """Asks a person for a Review, naming the event and its JSON Schema in the question."""

    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent:
        fields: dict[str, Any] = {
            "prefix": f"Review {ev.get('draft', 'the draft')}",
            "response_event": "Review",
            "response_schema": REVIEW_SCHEMA,
        }
        return InputRequiredEvent(**fields)

    @step
    async def decide(self, ev: Review) -> StopEvent:
        return StopEvent(result=ev.model_dump(exclude={"response"}))
