"""A turn, derived from its task's events: llama-stack's Turn and its stream events.

Pure: ``TurnView`` folds a turn task's TaskEvents, in stream order, into the Turn
(input messages, steps, output message, times) and returns for each event the
payloads llama-stack streams for it. The agent vocabulary (core/agent_events.py) maps
one to one onto llama-stack's steps:

    InferenceStarted                     step_start (inference)
    TextDelta                            step_progress (text delta)
    InferenceCompleted                   step_progress (a tool_call delta per call),
                                         step_complete (inference)
    ToolExecutionStarted                 step_start (tool_execution)
    ToolExecutionCompleted               step_complete (tool_execution)
    ShieldCallStarted / Completed        step_start / step_complete (shield_call)
    AwaitingClientTools (WAITING)        turn_awaiting_input
    StopEvent (SUCCEEDED)                turn_complete

A retried attempt of the task runs the turn again and repeats its events (the model's
answers replayed, so with the same content and step ids): the Turn keeps the steps of
the latest attempt, and a payload that was returned once is not returned again.

    >>> view = TurnView(task)                                     # doctest: +SKIP
    >>> for event in events: chunks += view.feed(event)           # doctest: +SKIP
    >>> view.turn().output_message.content.string_value           # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from pydantic import ValidationError

from llama_mesh.core import agent_events as ae
from llama_mesh.core.json_values import to_python, to_struct, to_value
from llama_mesh.core.lifecycle import STOP, SUCCEEDED, WAITING, is_final
from llama_mesh.core.names import TaskName
from llama_mesh.v1 import agents_pb2 as ag
from llama_mesh.v1 import resources_pb2

# Events that come only once a waiting turn got its client tools' responses.
_AFTER_ANSWER = (
    ae.ToolCallCompleted,
    ae.ToolExecutionCompleted,
    ae.InferenceStarted,
    ae.ShieldCallStarted,
)
INFERENCE = ag.STEP_TYPE_INFERENCE
TOOL_EXECUTION = ag.STEP_TYPE_TOOL_EXECUTION
SHIELD_CALL = ag.STEP_TYPE_SHIELD_CALL


def api_step_id(turn_id: str, step_id: str) -> str:
    """The API's id of a step: unique in the mesh, not only in its turn."""
    return f"{turn_id}-{step_id}"


def input_messages(task_input: dict[str, Any]) -> list[ag.InputMessage]:
    """The messages a turn took, from its task's input (the built-in agent service's
    `messages`, or a deployed agent's `user_msg`)."""
    raw = task_input.get("messages")
    if not isinstance(raw, list):
        user_msg = task_input.get("user_msg")
        raw = [] if user_msg is None else [{"role": "user", "content": user_msg}]
    out = []
    for message in raw:
        parsed = ag.InputMessage()
        if message.get("role") == "tool":
            parsed.tool.call_id = str(message.get("call_id", ""))
            parsed.tool.content.CopyFrom(to_value(message.get("content", "")))
        else:
            parsed.user.content.CopyFrom(to_value(message.get("content", "")))
            if message.get("context") is not None:
                parsed.user.context.CopyFrom(to_value(message["context"]))
        out.append(parsed)
    return out


def tool_call(call: ae.ToolCallRequest) -> ag.ToolCall:
    return ag.ToolCall(
        call_id=call.call_id,
        tool_name=call.tool_name,
        arguments=to_struct(call.arguments, "tool call arguments"),
        arguments_json=json.dumps(call.arguments),
    )


def completion(
    content: str, stop_reason: int, calls: list[ae.ToolCallRequest] | None = None
) -> ag.CompletionMessage:
    return ag.CompletionMessage(
        role="assistant",
        content=struct_pb2.Value(string_value=content),
        stop_reason=stop_reason,  # type: ignore[arg-type]
        tool_calls=[tool_call(c) for c in calls or []],
    )


def violation(found: ae.SafetyViolation | None) -> ag.SafetyViolation | None:
    if found is None:
        return None
    out = ag.SafetyViolation(
        violation_level=ag.ViolationLevel.Value(f"VIOLATION_LEVEL_{found.violation_level.upper()}"),
        metadata=to_struct(found.metadata, "violation metadata"),
    )
    if found.user_message is not None:
        out.user_message = found.user_message
    return out


@dataclass
class _Open:
    """A step that started and has not completed."""

    step_type: int
    started_at: timestamp_pb2.Timestamp


@dataclass
class _Attempt:
    """What one attempt of the turn's task did."""

    number: int
    steps: list[ag.Step] = field(default_factory=list)
    open: dict[str, _Open] = field(default_factory=dict)
    last_message: ag.CompletionMessage | None = None
    awaiting: list[ae.ToolCallRequest] | None = None
    awaiting_since: timestamp_pb2.Timestamp | None = None


class TurnView:
    """The Turn of one turn task, folded from its events in order."""

    def __init__(self, task: resources_pb2.Task) -> None:
        self.task = task
        name = TaskName.parse(task.name)
        self.turn_id = name.task_id
        self.session_id = name.session_id
        self.input_messages = input_messages(to_python(task.input))
        self.attempt = _Attempt(0)
        self.result: ae.AgentResult | None = None
        self.final: resources_pb2.TaskEvent | None = None
        self._returned: set[tuple[Any, ...]] = set()

    # -- what the turn is ------------------------------------------------------------

    @property
    def awaiting_input(self) -> bool:
        """The turn waits for the caller's client tools."""
        return self.final is None and self.attempt.awaiting is not None

    @property
    def awaited_calls(self) -> list[ae.ToolCallRequest]:
        return list(self.attempt.awaiting or [])

    def step_id(self, mesh_step_id: str) -> str:
        return api_step_id(self.turn_id, mesh_step_id)

    def turn(self) -> ag.Turn:
        """The turn as it stands."""
        turn = ag.Turn(
            turn_id=self.turn_id,
            session_id=self.session_id,
            input_messages=self.input_messages,
            steps=self.attempt.steps,
        )
        turn.started_at.CopyFrom(
            self.task.start_time if self.task.HasField("start_time") else self.task.create_time
        )
        if self.result is not None:
            turn.output_message.CopyFrom(
                completion(
                    self.result.response,
                    ag.STOP_REASON_END_OF_TURN,
                    self.result.pending_tool_calls,
                )
            )
        elif self.awaiting_input:
            last = self.attempt.last_message
            turn.output_message.CopyFrom(
                completion(
                    last.content.string_value if last is not None else "",
                    ag.STOP_REASON_END_OF_MESSAGE,
                    self.attempt.awaiting,
                )
            )
        elif self.attempt.last_message is not None:
            turn.output_message.CopyFrom(self.attempt.last_message)
        else:
            turn.output_message.role = "assistant"
            turn.output_message.content.string_value = ""
        if self.final is not None:
            turn.completed_at.CopyFrom(self.final.create_time)
        elif self.awaiting_input and self.attempt.awaiting_since is not None:
            turn.completed_at.CopyFrom(self.attempt.awaiting_since)
        return turn

    def step(self, api_id: str) -> ag.Step | None:
        return next((s for s in self.attempt.steps if s.step_id == api_id), None)

    # -- folding events ----------------------------------------------------------------

    def feed(self, event: resources_pb2.TaskEvent) -> list[ag.TurnEventPayload]:
        """Fold one event in; the stream payloads it gives (none already given)."""
        if event.attempt and event.attempt != self.attempt.number:
            self.attempt = _Attempt(event.attempt)
        payloads = self._payloads(event)
        fresh = []
        for key, payload in payloads:
            if key not in self._returned:
                self._returned.add(key)
                fresh.append(payload)
        return fresh

    def _payloads(
        self, event: resources_pb2.TaskEvent
    ) -> list[tuple[tuple[Any, ...], ag.TurnEventPayload]]:
        if is_final(event.state):
            self.final = event
            if event.state == SUCCEEDED and event.type == STOP:
                self.result = _result(event.payload)
                payload = ag.TurnEventPayload(
                    turn_complete=ag.TurnCompletePayload(turn=self.turn())
                )
                return [(("turn_complete",), payload)]
            return []
        try:
            parsed = ae.parse(event.type, to_python(event.payload))
        except ValidationError:
            return []  # not ours to read: shown neither as a step nor as an error
        if parsed is None:
            return []
        if isinstance(parsed, _AFTER_ANSWER):
            # The caller's responses came in: the turn goes on.
            self.attempt.awaiting = None
        at = event.create_time
        if isinstance(parsed, ae.InferenceStarted):
            return self._start(parsed.step_id, INFERENCE, at)
        if isinstance(parsed, ae.TextDelta):
            delta = ag.ContentDelta(text=ag.TextDelta(text=parsed.text))
            return [self._progress(parsed.step_id, INFERENCE, delta, ("text", parsed.index))]
        if isinstance(parsed, ae.InferenceCompleted):
            return self._inference_completed(parsed, at)
        if isinstance(parsed, ae.ToolExecutionStarted):
            return self._start(parsed.step_id, TOOL_EXECUTION, at)
        if isinstance(parsed, ae.ToolExecutionCompleted):
            details = ag.Step(
                tool_execution=ag.ToolExecutionStep(
                    tool_calls=[tool_call(c) for c in parsed.tool_calls],
                    tool_responses=[
                        ag.ToolResponse(
                            call_id=r.call_id,
                            tool_name=r.tool_name,
                            content=struct_pb2.Value(string_value=r.output),
                        )
                        for r in parsed.tool_responses
                    ],
                )
            )
            return self._complete(parsed.step_id, TOOL_EXECUTION, details, at)
        if isinstance(parsed, ae.ShieldCallStarted):
            return self._start(parsed.step_id, SHIELD_CALL, at)
        if isinstance(parsed, ae.ShieldCallCompleted):
            details = ag.Step(shield_call=ag.ShieldCallStep())
            found = violation(parsed.violation)
            if found is not None:
                details.shield_call.violation.CopyFrom(found)
            return self._complete(parsed.step_id, SHIELD_CALL, details, at)
        if isinstance(parsed, ae.AwaitingClientTools) and event.state == WAITING:
            self.attempt.awaiting = list(parsed.tool_calls)
            self.attempt.awaiting_since = at
            payload = ag.TurnEventPayload(
                turn_awaiting_input=ag.TurnAwaitingInputPayload(turn=self.turn())
            )
            return [(("awaiting", self.step_id(parsed.step_id)), payload)]
        return []

    def _start(
        self, mesh_step_id: str, step_type: int, at: timestamp_pb2.Timestamp
    ) -> list[tuple[tuple[Any, ...], ag.TurnEventPayload]]:
        step_id = self.step_id(mesh_step_id)
        self.attempt.open[step_id] = _Open(step_type, at)
        payload = ag.TurnEventPayload(
            step_start=ag.StepStartPayload(
                step_type=step_type,  # type: ignore[arg-type]
                step_id=step_id,
                metadata=struct_pb2.Struct(),
            )
        )
        return [(("start", step_id), payload)]

    def _progress(
        self, mesh_step_id: str, step_type: int, delta: ag.ContentDelta, key: tuple[Any, ...]
    ) -> tuple[tuple[Any, ...], ag.TurnEventPayload]:
        step_id = self.step_id(mesh_step_id)
        payload = ag.TurnEventPayload(
            step_progress=ag.StepProgressPayload(
                step_type=step_type,  # type: ignore[arg-type]
                step_id=step_id,
                delta=delta,
            )
        )
        return (("progress", step_id, *key), payload)

    def _inference_completed(
        self, parsed: ae.InferenceCompleted, at: timestamp_pb2.Timestamp
    ) -> list[tuple[tuple[Any, ...], ag.TurnEventPayload]]:
        calls = parsed.message.tool_calls
        message = completion(
            parsed.message.content,
            ag.STOP_REASON_END_OF_MESSAGE if calls else ag.STOP_REASON_END_OF_TURN,
            calls,
        )
        self.attempt.last_message = message
        out = [
            self._progress(
                parsed.step_id,
                INFERENCE,
                ag.ContentDelta(
                    tool_call=ag.ToolCallDelta(
                        tool_call=tool_call(call),
                        parse_status=ag.TOOL_CALL_PARSE_STATUS_SUCCEEDED,
                    )
                ),
                ("tool_call", call.call_id),
            )
            for call in calls
        ]
        details = ag.Step(inference=ag.InferenceStep(model_response=message))
        return out + self._complete(parsed.step_id, INFERENCE, details, at)

    def _complete(
        self,
        mesh_step_id: str,
        step_type: int,
        details: ag.Step,
        at: timestamp_pb2.Timestamp,
    ) -> list[tuple[tuple[Any, ...], ag.TurnEventPayload]]:
        step_id = self.step_id(mesh_step_id)
        opened = self.attempt.open.pop(step_id, None)
        details.turn_id = self.turn_id
        details.step_id = step_id
        details.started_at.CopyFrom(opened.started_at if opened is not None else at)
        details.completed_at.CopyFrom(at)
        self.attempt.steps.append(details)
        payload = ag.TurnEventPayload(
            step_complete=ag.StepCompletePayload(
                step_type=step_type,  # type: ignore[arg-type]
                step_id=step_id,
                step_details=details,
            )
        )
        return [(("complete", step_id), payload)]


def _result(payload: struct_pb2.Value) -> ae.AgentResult:
    """The AgentResult of a finished turn (a plain value for a non-agent result)."""
    value = to_python(payload)
    try:
        return ae.AgentResult.model_validate(value)
    except ValidationError:
        text = value if isinstance(value, str) else json.dumps(value)
        return ae.AgentResult(response=text, agent="")


def error_message(task: resources_pb2.Task) -> str:
    """Why a turn that did not complete ended, for the caller."""
    state = resources_pb2.TaskState.Name(task.state).removeprefix("TASK_STATE_").lower()
    return task.error.message or f"the turn ended {state}"


__all__ = ["TurnView", "api_step_id", "error_message", "input_messages", "json_format"]
