"""The agent event vocabulary: what an agent's task streams, by type name and JSON payload.

An agent service publishes these on its task's event stream (TaskEvent.type is the
name, TaskEvent.payload the JSON object below); the final event is the usual
``StopEvent`` whose payload is an ``AgentResult``. Events of the agent's tools and
workflows that are not in this vocabulary (e.g. an ``InputRequiredEvent`` of a tool that
asks a person) pass through under their own class names, as for any workflow.

One LLM call is one **inference step**; the tool calls it asks for form the **tool
execution step** that follows it::

    InferenceStarted(step-1)
      TextDelta(step-1, index 0) TextDelta(step-1, index 1) ...      as the model sends them
    InferenceCompleted(step-1)   full message, tool calls, stop_reason; TaskEvent.usage
    ToolExecutionStarted(step-2) the calls of step-1
      ToolCallStarted(step-2, call_1)  ToolCallStarted(step-2, call_2)  (parallel calls)
      ToolCallCompleted(step-2, call_2) ToolCallCompleted(step-2, call_1)
    ToolExecutionCompleted(step-2)   every call with its result
    InferenceStarted(step-3) ... InferenceCompleted(step-3)
    StopEvent                    AgentResult

Calls of **client tools** (tools the caller runs: the Agents API's ``client_tools``)
are not run by the agent: once the step's client calls are made, the task waits for
input with ``AwaitingClientTools`` (its TaskEvent state WAITING_FOR_INPUT) until a
``llama_mesh.agent.ClientToolResponses`` event answers them (``ClientToolResponses``
below; the Agents API's ResumeTurn sends it); then the step completes as usual.
A **shield** (a service that judges messages) is a step of its own:
``ShieldCallStarted`` / ``ShieldCallCompleted``, with the violation it found, if any.

Step ids (``step-N``) are unique within an attempt of the task; every TaskEvent also
carries its ``attempt``, and a retried attempt starts again at ``step-1``, so readers
keep the steps of the latest attempt. Deltas of a step are numbered from 0 without
gaps, so a reader can tell it missed none. ``InferenceCompleted`` carries the tokens of
its LLM call(s) in ``TaskEvent.usage`` (not in the payload); LLM calls outside an
inference step (a plain workflow, a tool that calls a model) are reported by
``llama_mesh.TokenUsage`` events. Both are added to the task's and the session's usage.

This module is pure (pydantic only): the client, the control plane and the Agents API
read payloads with it; the worker (worker/agent_events_mapper.py) produces them.

    >>> payload = {"step_id": "step-1", "index": 0, "text": "Hel"}
    >>> TextDelta.model_validate(payload).text
    'Hel'
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

PREFIX = "llama_mesh.agent."


class AgentEvent(BaseModel):
    """Base of every payload: its TaskEvent type name is ``TYPE``."""

    model_config = ConfigDict(extra="forbid")
    TYPE: ClassVar[str] = ""


class ToolCallRequest(BaseModel):
    """A call the model asked for."""

    call_id: str = Field(description="The model's id of the call (OpenAI `tool_calls[].id`).")
    tool_name: str
    arguments: dict[str, Any] = Field(description="The call's arguments, parsed.")


class ToolResponse(BaseModel):
    """What a tool returned (or the error it raised, as the model sees it)."""

    call_id: str
    tool_name: str
    output: str = Field(description="The text the model is given.")
    is_error: bool = Field(
        default=False, description="The tool raised; `output` is the error message."
    )


class AssistantMessage(BaseModel):
    """The model's message of one inference step."""

    role: Literal["assistant"] = "assistant"
    content: str = ""
    tool_calls: list[ToolCallRequest] = Field(default_factory=list)


class StepEvent(AgentEvent):
    step_id: str = Field(description="`step-N`, unique within the task's attempt.")


class InferenceStarted(StepEvent):
    """An LLM call begins."""

    TYPE = PREFIX + "InferenceStarted"
    agent: str = Field(description="Name of the agent that calls the model.")


class TextDelta(StepEvent):
    """A piece of the model's text, as it arrives."""

    TYPE = PREFIX + "TextDelta"
    index: int = Field(ge=0, description="Position within the step: 0, 1, 2, ... no gaps.")
    text: str


class ThinkingDelta(StepEvent):
    """A piece of the model's reasoning text, when the model streams one."""

    TYPE = PREFIX + "ThinkingDelta"
    index: int = Field(ge=0, description="Position within the step's thinking deltas.")
    text: str


class InferenceCompleted(StepEvent):
    """The LLM call ended: its whole message; its tokens are in TaskEvent.usage."""

    TYPE = PREFIX + "InferenceCompleted"
    agent: str
    message: AssistantMessage
    stop_reason: Literal["stop", "tool_calls"] = Field(
        description="`tool_calls` when the message asks for tools (a tool execution step "
        "follows), else `stop`."
    )


class ToolExecutionStarted(StepEvent):
    """The tools an inference step asked for start (each call below)."""

    TYPE = PREFIX + "ToolExecutionStarted"
    agent: str
    inference_step_id: str = Field(description="The inference step that asked for the calls.")
    tool_calls: list[ToolCallRequest]


class ToolCallStarted(StepEvent):
    """One tool call starts, with its arguments."""

    TYPE = PREFIX + "ToolCallStarted"
    call_id: str
    tool_name: str
    arguments: dict[str, Any]


class ToolCallCompleted(StepEvent):
    """One tool call ended (calls of one step may end in any order)."""

    TYPE = PREFIX + "ToolCallCompleted"
    call_id: str
    tool_name: str
    output: str
    is_error: bool = False
    return_direct: bool = Field(
        default=False, description="The tool's output is the agent's answer (no inference follows)."
    )


class ToolExecutionCompleted(StepEvent):
    """Every call of the step has its result."""

    TYPE = PREFIX + "ToolExecutionCompleted"
    agent: str
    tool_calls: list[ToolCallRequest]
    tool_responses: list[ToolResponse] = Field(description="In the order of `tool_calls`.")


class AwaitingClientTools(StepEvent):
    """The turn waits for the caller to run these client tool calls (the task is
    WAITING_FOR_INPUT; a ClientToolResponses event answers)."""

    TYPE = PREFIX + "AwaitingClientTools"
    tool_calls: list[ToolCallRequest] = Field(description="The calls to answer, in order.")


class SafetyViolation(BaseModel):
    """What a shield found (llama-stack's SafetyViolation)."""

    violation_level: Literal["info", "warn", "error"] = Field(
        description="`error` ends the turn with `user_message`; the others are recorded."
    )
    user_message: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ShieldCallStarted(StepEvent):
    """A shield service judges the turn's input (or its answer)."""

    TYPE = PREFIX + "ShieldCallStarted"
    shield: str = Field(description="The shield's service.")


class ShieldCallCompleted(StepEvent):
    """The shield's verdict."""

    TYPE = PREFIX + "ShieldCallCompleted"
    shield: str
    violation: SafetyViolation | None = Field(default=None, description="None: nothing found.")


class TokenUsage(AgentEvent):
    """Tokens of LLM calls made outside an inference step (counts in TaskEvent.usage)."""

    TYPE = "llama_mesh.TokenUsage"
    model: str = Field(description="The model's name, as its LLM class reports it.")


class ToolCallRecord(ToolCallRequest):
    """A tool call of the run, with its result."""

    output: str
    is_error: bool = False


class AgentResult(BaseModel):
    """The result of an agent task (the payload of its final StopEvent)."""

    response: str = Field(description="The agent's answer, as text.")
    agent: str = Field(description="The agent that answered (in a multi-agent workflow).")
    tool_calls: list[ToolCallRecord] = Field(
        default_factory=list, description="Every tool call of the run, in order."
    )
    structured_response: dict[str, Any] | None = Field(
        default=None, description="The agent's structured output, when it has an output class."
    )
    pending_tool_calls: list[ToolCallRequest] = Field(
        default_factory=list,
        description="Client tool calls the run stopped at, for its caller to run (a run "
        "that returns them instead of waiting: the Responses API's function calls).",
    )


class ClientToolResponse(BaseModel):
    """The caller's response to one client tool call."""

    call_id: str
    tool_name: str = ""
    content: Any = Field(description="Text, or content items; the model reads it as text.")


class ClientToolResponses(BaseModel):
    """The payload of a ``llama_mesh.agent.ClientToolResponses`` event sent into a task
    that waits with AwaitingClientTools: one response per call."""

    TYPE: ClassVar[str] = PREFIX + "ClientToolResponses"
    tool_responses: list[ClientToolResponse]


class ShieldInput(BaseModel):
    """What a shield service's task takes: the messages to judge."""

    messages: list[dict[str, Any]] = Field(description="`{role, content}` messages.")


class ShieldVerdict(BaseModel):
    """What a shield service's task returns."""

    violation: SafetyViolation | None = None


class ChatMessageInput(BaseModel):
    """A message of `chat_history`, as llama-index's ChatMessage reads it."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | None = None


class AgentRunInput(BaseModel):
    """The input of an agent task: a user message, optionally with a chat history."""

    # One of the two, said in the schema the service publishes: the control plane
    # refuses a task without either at once (the replica failed it after a wait).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"anyOf": [{"required": ["user_msg"]}, {"required": ["chat_history"]}]},
    )
    user_msg: str | None = Field(default=None, description="The user's message.")
    chat_history: list[ChatMessageInput] | None = Field(
        default=None,
        description="Replaces the session's conversation before `user_msg` is added.",
    )
    max_iterations: int | None = Field(
        default=None, ge=1, description="Inference steps allowed (llama-index's default: 20)."
    )


EVENTS: tuple[type[AgentEvent], ...] = (
    InferenceStarted,
    TextDelta,
    ThinkingDelta,
    InferenceCompleted,
    ToolExecutionStarted,
    ToolCallStarted,
    ToolCallCompleted,
    ToolExecutionCompleted,
    AwaitingClientTools,
    ShieldCallStarted,
    ShieldCallCompleted,
    TokenUsage,
)

#: Type name -> payload model, for every event of the vocabulary.
BY_TYPE: dict[str, type[AgentEvent]] = {cls.TYPE: cls for cls in EVENTS}


def parse(type_name: str, payload: Any) -> AgentEvent | None:
    """The typed payload of an event of the vocabulary; None for any other type.

    Raises pydantic.ValidationError if the payload does not match its type.
    """
    cls = BY_TYPE.get(type_name)
    return None if cls is None else cls.model_validate(payload)


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each event's payload, by type name (docs/agents.md)."""
    return {name: cls.model_json_schema() for name, cls in BY_TYPE.items()}
