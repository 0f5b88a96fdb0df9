"""llama-index agent events -> the agent vocabulary (core/agent_events.py).

llama-index agents (FunctionAgent, ReActAgent, CodeActAgent, AgentWorkflow) stream
``AgentInput`` when an LLM call starts, ``AgentStream`` for each chunk, ``AgentOutput``
when it ends, then ``ToolCall`` / ``ToolCallResult`` for each tool call it asked for.
This mapper turns them into inference and tool execution steps with ids, numbered
deltas, the step's token usage and its complete message.

llama-index writes the same event objects it goes on using into the stream (it extends
``AgentOutput.tool_calls`` with the run's earlier results, a ReAct agent strips
"Answer:" from the message in place), so the mapper reads what cannot have changed:
the step's own ``ToolSelection`` calls, and the text the chunks carried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llama_index.core.agent.workflow import (
    AgentInput,
    AgentOutput,
    AgentStream,
    ToolCall,
    ToolCallResult,
)
from llama_index.core.tools import ToolSelection
from workflows.events import Event

from llama_mesh.core import agent_events as ae
from llama_mesh.core.lifecycle import WAITING
from llama_mesh.core.token_usage import add
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.client_tools import ClientToolCallsRequested
from llama_mesh.worker.event_mapper import EventMapper, usage_of
from llama_mesh.worker.llm_usage import LLMCallUsage
from llama_mesh.worker.shields import ShieldCalled, ShieldCalling


def _emit(payload: ae.AgentEvent) -> resources_pb2.TaskEvent:
    out = resources_pb2.TaskEvent(type=payload.TYPE)
    # The model's JSON dump is JSON already: the Struct takes it as it is (9.5 us a
    # token delta; json_format.ParseDict, checking every value again, took 24 us).
    out.payload.struct_value.update(payload.model_dump(mode="json"))
    return out


def _request(selection: ToolSelection) -> ae.ToolCallRequest:
    return ae.ToolCallRequest(
        call_id=selection.tool_id,
        tool_name=selection.tool_name,
        arguments=dict(selection.tool_kwargs or {}),
    )


@dataclass
class _Inference:
    step_id: str
    agent: str
    deltas: int = 0
    thinking: int = 0
    text: str | None = None  # the cumulative text of the chunks, when streamed
    usage: resources_pb2.TokenUsage = field(default_factory=resources_pb2.TokenUsage)


@dataclass
class _ToolExecution:
    step_id: str
    agent: str
    calls: list[ae.ToolCallRequest]
    responses: dict[str, ae.ToolResponse] = field(default_factory=dict)


class AgentEventMapper(EventMapper):
    """Maps one agent run; also remembers its tool calls for the result."""

    def __init__(self) -> None:
        self._steps = 0
        self._inference: _Inference | None = None
        self._tools: _ToolExecution | None = None
        self._shield: str | None = None  # the open shield call step
        self.tool_calls: list[ae.ToolCallRecord] = []

    def _next_step(self) -> str:
        self._steps += 1
        return f"step-{self._steps}"

    def _start_inference(self, agent: str) -> list[resources_pb2.TaskEvent]:
        self._inference = _Inference(self._next_step(), agent)
        return [_emit(ae.InferenceStarted(step_id=self._inference.step_id, agent=agent))]

    def map(self, event: Event) -> list[resources_pb2.TaskEvent]:
        if isinstance(event, AgentInput):
            return self._start_inference(event.current_agent_name)
        if isinstance(event, AgentStream):
            return self._stream(event)
        if isinstance(event, LLMCallUsage):
            if self._inference is None:
                return super().map(event)
            add(self._inference.usage, usage_of(event))
            return []
        if isinstance(event, AgentOutput):
            return self._output(event)
        if isinstance(event, ToolCall):
            return self._tool_call(event)
        if isinstance(event, ToolCallResult):
            return self._tool_result(event)
        if isinstance(event, ClientToolCallsRequested):
            return self._awaiting(event)
        if isinstance(event, ShieldCalling):
            self._shield = self._next_step()
            return [_emit(ae.ShieldCallStarted(step_id=self._shield, shield=event.shield))]
        if isinstance(event, ShieldCalled):
            step_id, self._shield = self._shield or self._next_step(), None
            violation = None if event.violation is None else ae.SafetyViolation(**event.violation)
            completed = ae.ShieldCallCompleted(
                step_id=step_id, shield=event.shield, violation=violation
            )
            return [_emit(completed)]
        return super().map(event)

    def _awaiting(self, event: ClientToolCallsRequested) -> list[resources_pb2.TaskEvent]:
        """The step's client calls are made: the task waits for the caller's responses."""
        calls = [ae.ToolCallRequest.model_validate(c) for c in event.tool_calls]
        step_id = self._tools.step_id if self._tools is not None else self._next_step()
        out = _emit(ae.AwaitingClientTools(step_id=step_id, tool_calls=calls))
        out.state = WAITING
        return [out]

    def _stream(self, event: AgentStream) -> list[resources_pb2.TaskEvent]:
        out = [] if self._inference is not None else self._start_inference(event.current_agent_name)
        step = self._inference
        assert step is not None
        step.text = event.response
        if event.delta:
            delta = ae.TextDelta(step_id=step.step_id, index=step.deltas, text=event.delta)
            out.append(_emit(delta))
            step.deltas += 1
        if event.thinking_delta:
            out.append(
                _emit(
                    ae.ThinkingDelta(
                        step_id=step.step_id, index=step.thinking, text=event.thinking_delta
                    )
                )
            )
            step.thinking += 1
        return out

    def _output(self, event: AgentOutput) -> list[resources_pb2.TaskEvent]:
        out = [] if self._inference is not None else self._start_inference(event.current_agent_name)
        step = self._inference
        assert step is not None
        self._inference = None
        calls = [_request(c) for c in event.tool_calls if isinstance(c, ToolSelection)]
        content = step.text if step.text is not None else (event.response.content or "")
        completed = _emit(
            ae.InferenceCompleted(
                step_id=step.step_id,
                agent=step.agent,
                message=ae.AssistantMessage(content=content, tool_calls=calls),
                stop_reason="tool_calls" if calls else "stop",
            )
        )
        if step.usage.llm_calls:
            completed.usage.CopyFrom(step.usage)
        out.append(completed)
        if calls:
            self._tools = _ToolExecution(self._next_step(), step.agent, calls)
            out.append(
                _emit(
                    ae.ToolExecutionStarted(
                        step_id=self._tools.step_id,
                        agent=step.agent,
                        inference_step_id=step.step_id,
                        tool_calls=calls,
                    )
                )
            )
        return out

    def _tool_step(self, call_id: str, tool_name: str, kwargs: dict[str, Any]) -> _ToolExecution:
        """The open tool execution step (one is opened for a call nobody announced)."""
        if self._tools is None or call_id not in {c.call_id for c in self._tools.calls}:
            request = ae.ToolCallRequest(call_id=call_id, tool_name=tool_name, arguments=kwargs)
            if self._tools is None:
                self._tools = _ToolExecution(self._next_step(), "", [])
            self._tools.calls.append(request)
        return self._tools

    def _tool_call(self, event: ToolCall) -> list[resources_pb2.TaskEvent]:
        kwargs = dict(event.tool_kwargs or {})
        step = self._tool_step(event.tool_id, event.tool_name, kwargs)
        return [
            _emit(
                ae.ToolCallStarted(
                    step_id=step.step_id,
                    call_id=event.tool_id,
                    tool_name=event.tool_name,
                    arguments=kwargs,
                )
            )
        ]

    def _tool_result(self, event: ToolCallResult) -> list[resources_pb2.TaskEvent]:
        kwargs = dict(event.tool_kwargs or {})
        step = self._tool_step(event.tool_id, event.tool_name, kwargs)
        output = str(event.tool_output.content or "")
        is_error = bool(event.tool_output.is_error)
        step.responses[event.tool_id] = ae.ToolResponse(
            call_id=event.tool_id, tool_name=event.tool_name, output=output, is_error=is_error
        )
        self.tool_calls.append(
            ae.ToolCallRecord(
                call_id=event.tool_id,
                tool_name=event.tool_name,
                arguments=kwargs,
                output=output,
                is_error=is_error,
            )
        )
        out = [
            _emit(
                ae.ToolCallCompleted(
                    step_id=step.step_id,
                    call_id=event.tool_id,
                    tool_name=event.tool_name,
                    output=output,
                    is_error=is_error,
                    return_direct=event.return_direct,
                )
            )
        ]
        if len(step.responses) == len(step.calls):
            self._tools = None
            out.append(
                _emit(
                    ae.ToolExecutionCompleted(
                        step_id=step.step_id,
                        agent=step.agent,
                        tool_calls=step.calls,
                        tool_responses=[step.responses[c.call_id] for c in step.calls],
                    )
                )
            )
        return out
