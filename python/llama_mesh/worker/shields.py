"""Shields: services that judge a turn's messages, called by the built-in agent service.

A shield is any service of the mesh whose task takes ``ShieldInput`` (`{"messages":
[{"role", "content"}]}`) and returns a ``ShieldVerdict`` (`{"violation": null}` or a
llama-stack SafetyViolation; core/agent_events.py). An agent's `input_shields` judge
the turn's new messages before the model sees them, its `output_shields` the answer.
Each call is a child task of the turn (child_tasks.py) and a `shield_call` step on its
stream; a violation of level "error" ends the turn with the violation's message, as
llama-stack does.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from workflows import Context
from workflows.events import Event

from llama_mesh.core import agent_events as ae
from llama_mesh.worker.child_tasks import call_service


class ShieldCalling(Event):
    """A shield call starts (mapped to ShieldCallStarted)."""

    shield: str


class ShieldCalled(Event):
    """A shield answered (mapped to ShieldCallCompleted)."""

    shield: str
    violation: dict[str, Any] | None = None


async def judge(
    ctx: Context, shields: list[str], messages: list[dict[str, Any]]
) -> ae.SafetyViolation | None:
    """Run the shields in order on `messages`; the first violation of level "error"
    (the others are recorded as their steps and the turn goes on)."""
    for shield in shields:
        ctx.write_event_to_stream(ShieldCalling(shield=shield))
        result = await call_service(shield, ae.ShieldInput(messages=messages).model_dump())
        try:
            verdict = ae.ShieldVerdict.model_validate(result)
        except ValidationError as err:
            raise TypeError(
                f"shield {shield!r} answered {result!r}, not {{'violation': ...}}: {err}"
            ) from None
        found = verdict.violation
        ctx.write_event_to_stream(
            ShieldCalled(
                shield=shield, violation=None if found is None else found.model_dump(mode="json")
            )
        )
        if found is not None and found.violation_level == "error":
            return found
    return None
