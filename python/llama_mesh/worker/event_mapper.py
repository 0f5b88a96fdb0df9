"""What a run's workflow events become on the task's event stream.

The runner hands every event a workflow streams to a mapper, one per run, and publishes
the TaskEvents it returns. The generic mapper names an event by its class and sends its
fields as the payload; an event that asks for input makes the task wait; the tokens of
an LLM call become a ``llama_mesh.TokenUsage`` event. The agent mapper
(agent_mapper.py) speaks the agent vocabulary (core/agent_events.py) instead.
"""

from __future__ import annotations

from typing import Any

from workflows.events import Event, InputRequiredEvent

from llama_mesh.core import agent_events
from llama_mesh.core.json_values import to_value
from llama_mesh.core.lifecycle import WAITING
from llama_mesh.core.token_usage import of_call
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.llm_usage import LLMCallUsage


def event_payload(event: Event) -> Any:
    """An event's fields as a JSON object (free-form fields merged in)."""
    data = event.model_dump(mode="json")
    extra = data.pop("_data", None)
    if isinstance(extra, dict):
        data.update(extra)
    return data


def task_event(type_name: str, payload: Any) -> resources_pb2.TaskEvent:
    out = resources_pb2.TaskEvent(type=type_name)
    out.payload.CopyFrom(to_value(payload, f"event {type_name}"))
    return out


def usage_of(call: LLMCallUsage) -> resources_pb2.TokenUsage:
    return of_call(call.model, call.prompt_tokens, call.completion_tokens)


class EventMapper:
    """Maps the events of one workflow run to TaskEvents (no attempt set)."""

    def map(self, event: Event) -> list[resources_pb2.TaskEvent]:
        if isinstance(event, LLMCallUsage):
            out = task_event(agent_events.TokenUsage.TYPE, {"model": event.model})
            out.usage.CopyFrom(usage_of(event))
            return [out]
        out = task_event(type(event).__name__, event_payload(event))
        if isinstance(event, InputRequiredEvent):
            out.state = WAITING
        return [out]
