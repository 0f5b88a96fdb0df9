"""Runs one attempt of a task on a llama-index Workflow.

It turns task input into a run, restores and saves the session's Context with the
JSON serializer (never pickle), and hands every streamed event, mapped to TaskEvents
(event_mapper.py), to the runtime. The runtime around it is the same for every kind of
service; an agent's runner (agent_runner.py) overrides the hooks below; what it needs
of the library's private parts is in workflow_internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pydantic_core
from workflows import Context, Workflow
from workflows.context.serializers import JsonSerializer
from workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)
from workflows.handler import WorkflowHandler

from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.event_mapper import EventMapper, event_payload
from llama_mesh.worker.llm_usage import UsageSink, collect_usage
from llama_mesh.worker.stream_marks import StreamMark, StreamMarks, reading_marks
from llama_mesh.worker.workflow_internals import steps

logger = logging.getLogger(__name__)

__all__ = [
    "ContextTypeNotAllowedError",
    "OnEvent",
    "RunOutcome",
    "WorkflowRunner",
    "declared_types",
    "event_payload",
    "to_json",
]

# Called with each TaskEvent of the run (type, payload, and usage or a WAITING state
# when the event reports tokens or asks for input; the runtime sets the attempt).
OnEvent = Callable[[resources_pb2.TaskEvent, WorkflowHandler], Awaitable[None]]


class ResultNotSerializableError(TypeError):
    """The workflow returned a value that is not JSON."""


def to_json(value: Any) -> Any:
    try:
        return pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError as err:
        raise ResultNotSerializableError(
            f"the workflow's result of type {type(value).__name__} is not JSON-serializable: "
            "return JSON values or pydantic models"
        ) from err


def _event_classes(workflow: Workflow) -> dict[str, type[Event]]:
    """Event types the workflow's steps accept, by class name."""
    found: dict[str, type[Event]] = {"HumanResponseEvent": HumanResponseEvent}
    for step in steps(workflow):
        for cls in step.config.accepted_events:
            if (
                inspect.isclass(cls)
                and issubclass(cls, Event)
                and not issubclass(cls, StartEvent | StopEvent)
            ):
                found[cls.__name__] = cls
    return found


def _event_schema(cls: type[Event]) -> dict[str, Any]:
    """The JSON Schema of an event class's fields. HumanResponseEvent declares none
    (it takes any keyword), but what workflows read from it is `response`, as its
    documentation shows: an answer without it would fail the task later."""
    schema = cls.model_json_schema()
    schema.get("properties", {}).pop("_data", None)
    if not schema.get("properties") and issubclass(cls, HumanResponseEvent):
        return {
            "type": "object",
            "properties": {"response": {"description": "The person's answer."}},
            "required": ["response"],
        }
    schema.pop("description", None)  # the class docstring: long, and not a check
    return schema


class ContextTypeNotAllowedError(TypeError):
    """A saved Context names a type the workflow does not declare: it is not restored
    (a type named by stored data is never imported)."""


def declared_types(workflow: Workflow) -> list[type[Any]]:
    """What a saved Context of this workflow may hold: its events, the types its steps
    declare (accepted, returned, their state), and the workflow's `context_types`."""
    found: list[Any] = [
        workflow.start_event_class,
        workflow.stop_event_class,
        InputRequiredEvent,
        HumanResponseEvent,
        *getattr(workflow, "context_types", ()),
    ]
    for step in steps(workflow):
        found.extend(step.config.accepted_events)
        found.extend(step.config.return_types)
        found.append(step.config.context_state_type)
    return [cls for cls in dict.fromkeys(found) if inspect.isclass(cls) and cls is not type(None)]


def _named_types(value: Any) -> Iterator[str]:
    """Class names a serialized Context asks to restore (store values are JSON text)."""
    if isinstance(value, str) and value.startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            return
    if isinstance(value, dict):
        name = value.get("qualified_name")
        if (value.get("__is_pydantic") or value.get("__is_component")) and isinstance(name, str):
            yield name
        for item in value.values():
            yield from _named_types(item)
    elif isinstance(value, list):
        for item in value:
            yield from _named_types(item)


@dataclass
class RunOutcome:
    result: Any
    context: dict[str, Any]


class WorkflowRunner:
    """Runs a Workflow for the mesh."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow

    # Both walk the workflow's steps (inspect.getmembers on the instance): computed when
    # first needed, not for a runner made per run (the built-in agent service's).
    @functools.cached_property
    def _serializer(self) -> JsonSerializer:
        return self.serializer()

    @functools.cached_property
    def _events(self) -> dict[str, type[Event]]:
        return _event_classes(self.workflow)

    def serializer(self) -> JsonSerializer:
        """How the session's Context is written and read back: with an allow-list, so
        that it restores only the workflow's own types, whatever class names the stored
        JSON (which task input can reach) asks for."""
        return JsonSerializer(allowed_types=declared_types(self.workflow))

    @property
    def description(self) -> str:
        """The workflow's own `description` (agents and tool services have one), else the
        class docstring."""
        declared = getattr(self.workflow, "description", None)
        if isinstance(declared, str) and declared:
            return declared
        return inspect.getdoc(type(self.workflow)) or ""

    @property
    def accepted_event_types(self) -> list[str]:
        return sorted(self._events)

    @property
    def kind(self) -> int | None:
        """The kind of service the workflow says it is (tool, human, orchestrator), if any."""
        kind: int | None = getattr(self.workflow, "mesh_service_kind", None)
        return kind

    def tools(self) -> list[dict[str, Any]]:
        """The tools a tool service serves (name, description, parameters)."""
        describe = getattr(self.workflow, "mesh_tools", None)
        tools: list[dict[str, Any]] = describe() if describe is not None else []
        return tools

    def event_schemas(self) -> dict[str, dict[str, Any]]:
        """A JSON Schema per event type the workflow takes as an answer, so that the
        control plane can refuse an answer its event cannot be built from."""
        return {name: _event_schema(cls) for name, cls in sorted(self._events.items())}

    def models(self) -> list[str]:
        """The deployment models the service runs agents on (the built-in agent service)."""
        return []

    async def aclose(self) -> None:
        """Release what the runner holds (a model's HTTP connections): the replica that
        runs it calls this once it has stopped (worker/runtime.py). Nothing here."""

    def input_schema(self) -> dict[str, Any]:
        declared = getattr(self.workflow, "mesh_input_schema", None)
        if declared is not None:
            schema: dict[str, Any] = declared()
            return schema
        start = self.workflow.start_event_class
        if start is StartEvent:
            return {"type": "object"}
        schema = start.model_json_schema()
        schema.get("properties", {}).pop("_data", None)
        return schema

    def make_event(self, type_name: str, payload: dict[str, Any]) -> Event:
        """Build an event sent into a running task; KeyError if the type is unknown."""
        cls = self._events.get(type_name) or self._events.get(type_name.rpartition(".")[2])
        if cls is None:
            raise KeyError(type_name)
        return cls(**payload)

    @staticmethod
    def is_input_request(event: Event) -> bool:
        return isinstance(event, InputRequiredEvent)

    # ------------------------------------------------------------ hooks

    def mapper(self) -> EventMapper:
        """A new mapper of workflow events to TaskEvents, for one run."""
        return EventMapper()

    def restore(
        self, kwargs: dict[str, Any], saved: dict[str, Any] | None
    ) -> tuple[Context | None, dict[str, Any]]:
        """The Context to continue (None: a fresh one) and the run's keyword arguments."""
        return (self.restore_context(saved) if saved else None), kwargs

    def restore_context(self, saved: dict[str, Any]) -> Context:
        """A saved Context, back; ContextTypeNotAllowedError if it names a type the
        workflow does not declare."""
        # The serializer would refuse an undeclared type only when a step reads the
        # value; checking every named type first makes it one typed error up front.
        for qualified_name in _named_types(saved):
            try:
                self._serializer.resolve_class(qualified_name)
            except ValueError as err:
                raise ContextTypeNotAllowedError(
                    f"the session's saved Context holds a {qualified_name}, which "
                    f"{type(self.workflow).__name__} does not declare: it is not restored "
                    "(declare it in the workflow's `context_types`)"
                ) from err
        return Context.from_dict(self.workflow, saved, serializer=self._serializer)

    def result(self, value: Any, mapper: EventMapper) -> Any:
        """The task's result (JSON) from what the workflow returned."""
        return to_json(value)

    async def snapshot(self, handler: WorkflowHandler) -> dict[str, Any]:
        """What the session keeps for the next run (JSON)."""
        return handler.ctx.to_dict(serializer=self._serializer)

    # ------------------------------------------------------------ running

    async def run(
        self,
        kwargs: dict[str, Any],
        saved_context: dict[str, Any] | None,
        on_event: OnEvent,
    ) -> RunOutcome:
        ctx, run_kwargs = self.restore(kwargs, saved_context)
        mapper = self.mapper()
        sink = UsageSink()
        marks = StreamMarks()
        with collect_usage(sink), reading_marks(marks):
            handler = self.workflow.run(ctx=ctx, **run_kwargs)
            sink.run_id = marks.run_id = handler.run_id

            async def publish(events: list[Event]) -> None:
                for event in events:
                    for out in mapper.map(event):
                        await on_event(out, handler)

            try:
                async for event in handler.stream_events():
                    await publish([*sink.take_pending()])
                    if isinstance(event, StreamMark):
                        marks.reached(event)  # a step awaits it (child_tasks.py)
                    elif not isinstance(event, StopEvent):
                        await publish([event])
                result = await handler
                await publish([*sink.take_pending()])
            except asyncio.CancelledError:
                if not handler.is_done():
                    await asyncio.shield(handler.cancel_run())
                raise
            except BaseException:
                # The run stops with what stopped it (an event the mesh refused, e.g.).
                if not handler.is_done():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(handler.cancel_run())
                raise
        return RunOutcome(result=self.result(result, mapper), context=await self.snapshot(handler))
