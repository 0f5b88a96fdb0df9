"""Runs a llama-index agent as a service: the workflow runner, agent-aware.

An agent (``BaseWorkflowAgent``: FunctionAgent, ReActAgent, ...; or an
``AgentWorkflow``) is a Workflow, so it runs on the same runtime as any other
(DESIGN.md: no second runtime). What differs is said here:

- the input is a user message and an optional chat history (``AgentRunInput``);
- its events become the agent vocabulary (agent_mapper.py, core/agent_events.py);
- its result is an ``AgentResult`` (the answer as text, the tool calls with results);
- its chat memory is kept in the session. llama-index skips the memory when it
  serializes a Context, so the runner saves the conversation beside the Context as
  plain message JSON and gives the next run a memory holding it. Nothing is rebuilt
  from a type name the request chose: messages are validated as ``ChatMessage``, and
  the Context is restored with an allow-list of the agent's own types.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from llama_index.core.agent.workflow import (
    AgentInput,
    AgentOutput,
    AgentSetup,
    AgentStream,
    AgentWorkflow,
    BaseWorkflowAgent,
    ToolCall,
    ToolCallResult,
)
from llama_index.core.agent.workflow.workflow_events import AgentWorkflowStartEvent
from llama_index.core.llms import LLM, ChatMessage
from llama_index.core.memory import BaseMemory, ChatMemoryBuffer
from llama_index.core.tools import ToolOutput, ToolSelection
from llama_index.core.utils import get_tokenizer
from pydantic import ValidationError
from workflows import Context, Workflow
from workflows.context.serializers import JsonSerializer
from workflows.context.state_store import UnserializableKeyWarning
from workflows.events import StopEvent
from workflows.handler import WorkflowHandler

from llama_mesh.core import agent_events
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.agent_mapper import AgentEventMapper
from llama_mesh.worker.event_mapper import EventMapper
from llama_mesh.worker.llm_usage import ask_for_stream_usage
from llama_mesh.worker.workflow_runner import WorkflowRunner, declared_types, to_json

if TYPE_CHECKING:
    from llama_mesh.worker.models import ModelRegistry

Agent = BaseWorkflowAgent | AgentWorkflow

# Types an agent's saved Context may name (besides the workflow runtime's own).
ALLOWED_TYPES: tuple[type[Any], ...] = (
    AgentInput,
    AgentSetup,
    AgentStream,
    AgentOutput,
    AgentWorkflowStartEvent,
    ToolCall,
    ToolCallResult,
    ToolSelection,
    ToolOutput,
    ChatMessage,
    StopEvent,
)


def agents_of(agent: Agent) -> list[BaseWorkflowAgent]:
    return list(agent.agents.values()) if isinstance(agent, AgentWorkflow) else [agent]


def _root(agent: Agent) -> BaseWorkflowAgent:
    return agent.agents[agent.root_agent] if isinstance(agent, AgentWorkflow) else agent


def _memory(llm: LLM, history: list[ChatMessage]) -> BaseMemory:
    """The memory llama-index would make for the agent, holding `history`."""
    return ChatMemoryBuffer.from_defaults(llm=llm, chat_history=history)


def _messages(raw: Any, what: str) -> list[ChatMessage]:
    try:
        return [ChatMessage.model_validate(m) for m in raw or []]
    except ValidationError as err:
        raise InvalidArgumentError(f"{what} is not a list of chat messages: {err}") from None


class AgentRunner(WorkflowRunner):
    """Runs an agent for the mesh."""

    def __init__(self, agent: Agent, models: ModelRegistry | None = None) -> None:
        """`models`: the registry the agent's LLMs were built from, if the runner owns
        it (an agent of the deployment file): closed with the runner."""
        super().__init__(agent)
        self.agent = agent
        self._model_registry = models
        for each in agents_of(agent):
            ask_for_stream_usage(each.llm)
        # The memory's tokenizer loads its encoding on first use, for seconds on a busy
        # machine: load it now, not in the event loop of the first task.
        get_tokenizer()

    @property
    def kind(self) -> int | None:
        return resources_pb2.SERVICE_KIND_AGENT

    async def aclose(self) -> None:
        if self._model_registry is not None:
            await self._model_registry.aclose()

    def serializer(self) -> JsonSerializer:
        return JsonSerializer(allowed_types=[*declared_types(self.workflow), *ALLOWED_TYPES])

    @property
    def description(self) -> str:
        root = _root(self.agent)
        return (
            root.description
            if isinstance(self.agent, BaseWorkflowAgent)
            else (super().description or root.description)
        )

    def input_schema(self) -> dict[str, Any]:
        return agent_events.AgentRunInput.model_json_schema()

    def mapper(self) -> EventMapper:
        return AgentEventMapper()

    def restore(
        self, kwargs: dict[str, Any], saved: dict[str, Any] | None
    ) -> tuple[Context | None, dict[str, Any]]:
        try:
            request = agent_events.AgentRunInput.model_validate(kwargs)
        except ValidationError as err:
            raise InvalidArgumentError(f"invalid agent input: {err}") from None
        if request.user_msg is None and not request.chat_history:
            raise InvalidArgumentError("an agent task needs `user_msg` or `chat_history`")
        saved = saved or {}
        context = saved.get("workflow")
        ctx = self.restore_context(context) if context else None
        history = _messages(saved.get("chat_history"), "the saved conversation")
        run: dict[str, Any] = {"memory": _memory(_root(self.agent).llm, history)}
        if request.user_msg is not None:
            run["user_msg"] = request.user_msg
        if request.chat_history:
            dumped = [m.model_dump(exclude_none=True) for m in request.chat_history]
            run["chat_history"] = _messages(dumped, "chat_history")
        if request.max_iterations is not None:
            run["max_iterations"] = request.max_iterations
        return ctx, run

    def result(self, value: Any, mapper: EventMapper) -> Any:
        if not isinstance(value, AgentOutput):
            return super().result(value, mapper)
        tool_calls = mapper.tool_calls if isinstance(mapper, AgentEventMapper) else []
        return to_json(
            agent_events.AgentResult(
                response=value.response.content or "",
                agent=value.current_agent_name,
                tool_calls=tool_calls,
                structured_response=value.structured_response,
            ).model_dump(mode="json")
        )

    async def conversation(self, handler: WorkflowHandler) -> list[dict[str, Any]]:
        """The run's chat memory, as message JSON."""
        memory = await handler.ctx.store.get("memory", default=None)
        history = await memory.aget_all() if isinstance(memory, BaseMemory) else []
        return [m.model_dump(mode="json") for m in history]

    async def snapshot(self, handler: WorkflowHandler) -> dict[str, Any]:
        with warnings.catch_warnings():
            # llama-index skips the memory (it says so): it is saved just below.
            warnings.simplefilter("ignore", UnserializableKeyWarning)
            context = handler.ctx.to_dict(serializer=self._serializer)
        return {"workflow": context, "chat_history": await self.conversation(handler)}


def runner_for(workflow: Workflow | WorkflowRunner) -> WorkflowRunner:
    """The runner for `workflow`: agent-aware for llama-index agents; a runner as is
    (a service that builds its workflow per task, e.g. the built-in agent service)."""
    if isinstance(workflow, WorkflowRunner):
        return workflow
    return (
        AgentRunner(workflow)
        if isinstance(workflow, BaseWorkflowAgent | AgentWorkflow)
        else (WorkflowRunner(workflow))
    )
