"""The built-in agent service: agents the Agents API creates, built from their configuration.

Each task of the service (``AGENTS_SERVICE``) is one turn of one agent. Its input
(core/agent_turns.TurnInput) carries the agent's AgentConfig; the runner builds a
``ConfiguredAgent`` for it, a llama-index FunctionAgent with the configured model and
sampling, instructions, tools of mesh services (toolgroups, through MeshTools),
client tools and shields, and runs it as any agent runs (agent_runner.py): the same
events on the task's stream, the conversation kept in the session.

    runner = ConfiguredAgentRunner({"scripted": ModelConfig(base_url=url)})
    async with ServiceRuntime.start(runner, ServiceConfig(AGENTS_SERVICE), cp): ...
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

from google.protobuf import json_format
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCall, ToolCallResult
from llama_index.core.agent.workflow.workflow_events import AgentInput, AgentWorkflowStartEvent
from llama_index.core.llms import LLM, ChatMessage, TextBlock
from llama_index.core.tools import BaseTool, ToolOutput, ToolSelection
from llama_index.core.utils import get_tokenizer
from openai import AsyncOpenAI
from pydantic import PrivateAttr, ValidationError
from workflows import Context, step
from workflows.events import Event, HumanResponseEvent, StopEvent
from workflows.handler import WorkflowHandler

from llama_mesh.config import ModelConfig
from llama_mesh.core import agent_config
from llama_mesh.core import agent_events as ae
from llama_mesh.core.agent_turns import TurnInput
from llama_mesh.core.errors import FailedPreconditionError, InvalidArgumentError
from llama_mesh.core.names import AGENTS_SERVICE
from llama_mesh.v1 import agents_pb2
from llama_mesh.worker.agent_runner import AgentRunner
from llama_mesh.worker.client_tools import (
    ClientTool,
    ClientToolResponses,
    PendingClientCalls,
    content_text,
)
from llama_mesh.worker.event_mapper import EventMapper
from llama_mesh.worker.mesh_tools import MeshTools
from llama_mesh.worker.models import ModelKeyMissingError, build_llm, model_client
from llama_mesh.worker.replaying_llm import ReplayingLLM
from llama_mesh.worker.shields import judge
from llama_mesh.worker.workflow_runner import OnEvent, RunOutcome

logger = logging.getLogger(__name__)


class ConfiguredAgent(FunctionAgent):
    """A FunctionAgent whose client tools the caller answers, with shields.

    `client_tools` says what a call of a client tool does: "wait" for the caller's
    responses (the Agents API: the turn waits, ResumeTurn answers), or "return" the
    calls as the run's result (the Responses API's `function_call` output items).
    """

    client_tool_names: frozenset[str] = frozenset()
    client_tools: Literal["wait", "return"] = "wait"
    input_shields: list[str] = []
    output_shields: list[str] = []
    _pending: PendingClientCalls = PrivateAttr(default_factory=PendingClientCalls)
    # The turn's new messages, which the input shields judge.
    _new_messages: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _steps: dict[str, Any] | None = PrivateAttr(default=None)

    def _get_steps(self) -> dict[str, Any]:
        # The library looks the steps up (inspect.getmembers over this pydantic model)
        # for every step it runs, a tenth of a turn's CPU; an agent's steps never change.
        # (workflow_internals.py lists this use of the library's private parts.)
        if self._steps is None:
            self._steps = super()._get_steps()
        return self._steps

    @step
    async def init_run(self, ctx: Context, ev: AgentWorkflowStartEvent) -> AgentInput | StopEvent:
        agent_input: AgentInput = await FunctionAgent.init_run(self, ctx, ev)
        if not self.input_shields:
            return agent_input
        found = await judge(ctx, self.input_shields, self._new_messages)
        if found is None:
            return agent_input
        return await self._refuse(ctx, found)

    async def _refuse(self, ctx: Context, found: ae.SafetyViolation) -> StopEvent:
        """End the turn with the violation's message, as llama-stack does."""
        message = ChatMessage(role="assistant", content=found.user_message or "")
        memory = await ctx.store.get("memory")
        await memory.aput(message)
        output = AgentOutput(
            response=message, tool_calls=[], raw=None, current_agent_name=self.name
        )
        return StopEvent(result=output)

    @step
    async def parse_agent_output(
        self, ctx: Context, ev: AgentOutput
    ) -> StopEvent | AgentInput | ToolCall | None:
        calls = [c for c in ev.tool_calls if c.tool_name in self.client_tool_names]
        if calls and self.client_tools == "return":
            # The caller runs them: the run ends with the calls as its answer.
            output = await self.finalize(ctx, ev, await ctx.store.get("memory"))
            await ctx.store.set("current_tool_calls", [])
            return StopEvent(result=output)
        if calls:
            self._pending.expect(calls)
        if not ev.tool_calls and self.output_shields:
            found = await judge(
                ctx, self.output_shields, [{"role": "assistant", "content": ev.response.content}]
            )
            if found is not None:
                # The answer the model gave is replaced, in the memory too.
                ev.response.blocks = [TextBlock(text=found.user_message or "")]
        parsed: StopEvent | AgentInput | ToolCall | None = await FunctionAgent.parse_agent_output(
            self, ctx, ev
        )
        return parsed

    @step
    async def call_tool(self, ctx: Context, ev: ToolCall) -> ToolCallResult:
        if ev.tool_name not in self.client_tool_names:
            called: ToolCallResult = await FunctionAgent.call_tool(self, ctx, ev)
            return called
        ctx.write_event_to_stream(
            ToolCall(tool_name=ev.tool_name, tool_kwargs=ev.tool_kwargs, tool_id=ev.tool_id)
        )
        request = self._pending.request()
        if request is not None:
            ctx.write_event_to_stream(request)
        content = await self._pending.response(ev.tool_id)
        result = ToolCallResult(
            tool_name=ev.tool_name,
            tool_kwargs=ev.tool_kwargs,
            tool_id=ev.tool_id,
            tool_output=ToolOutput(
                content=content,
                tool_name=ev.tool_name,
                raw_input=ev.tool_kwargs,
                raw_output=content,
            ),
            return_direct=False,
        )
        ctx.write_event_to_stream(result)
        return result

    @step
    async def receive_client_tool_responses(self, ctx: Context, ev: ClientToolResponses) -> None:
        """The caller's responses (sent into the waiting task) answer the pending calls."""
        self._pending.answer(ev)


def chat_model(
    model_id: str, model: ModelConfig, sampling: dict[str, Any], clients: list[AsyncOpenAI]
) -> LLM:
    """The llama-index LLM of a deployment model (worker/models.build_llm, the one builder),
    with these sampling settings; it replays a turn's recorded answers (replaying_llm).
    Its OpenAI client is added to `clients`, for the caller to close."""
    extra: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    for key, value in sampling.items():
        if key in ("temperature", "max_tokens"):
            fields[key] = value
        elif key in ("top_k",):  # not an OpenAI parameter: sent in the body as is
            extra.setdefault("extra_body", {})[key] = value
        else:
            extra[key] = value
    try:
        client = model_client(model_id, model)
    except ModelKeyMissingError as err:
        raise FailedPreconditionError(str(err)) from None
    clients.append(client)
    return build_llm(
        model_id,
        model,
        ReplayingLLM,
        async_openai_client=client,
        additional_kwargs=extra,
        **fields,
    )


def _chat_message(message: dict[str, Any]) -> dict[str, Any]:
    """A llama-stack input message as llama-index ChatMessage JSON."""
    if message.get("role") == "tool":
        return {
            "role": "tool",
            "content": content_text(message.get("content", "")),
            "additional_kwargs": {"tool_call_id": message.get("call_id", "")},
        }
    text = content_text(message.get("content", ""))
    context = message.get("context")
    if context:
        text = f"{text}\n\n{content_text(context)}"
    return {"role": "user", "content": text}


class _TurnRunner(AgentRunner):
    """Runs one ConfiguredAgent: its result names the client calls it stopped at, and
    the session keeps only the conversation (the agent is built anew each turn)."""

    def result(self, value: Any, mapper: EventMapper) -> Any:
        result = super().result(value, mapper)
        if isinstance(value, AgentOutput) and isinstance(self.agent, ConfiguredAgent):
            names = self.agent.client_tool_names
            result["pending_tool_calls"] = [
                ae.ToolCallRequest(
                    call_id=c.tool_id, tool_name=c.tool_name, arguments=dict(c.tool_kwargs or {})
                ).model_dump(mode="json")
                for c in value.tool_calls
                if isinstance(c, ToolSelection) and c.tool_name in names
            ]
        return result

    async def snapshot(self, handler: WorkflowHandler) -> dict[str, Any]:
        # Only the conversation: serializing the Context too (its events hold the whole
        # history) made each turn of a long session cost more than the one before.
        return {"chat_history": await self.conversation(handler)}


class ConfiguredAgentRunner(AgentRunner):
    """The runner of the built-in agent service: builds each turn's agent."""

    def __init__(self, models: Mapping[str, ModelConfig | LLM]) -> None:
        if not models:
            raise ValueError("the built-in agent service needs at least one model")
        self._models = dict(models)
        self._llms: dict[tuple[str, str], LLM] = {}
        self._clients: list[AsyncOpenAI] = []  # of the LLMs built here, closed by aclose
        first = next(iter(self._models))
        super().__init__(
            ConfiguredAgent(name=AGENTS_SERVICE, llm=self.llm(first, {}), timeout=None)
        )
        # The chat memory counts tokens with tiktoken, which loads its encoding on first
        # use (most of a second): load it now, not in the event loop of the first turn.
        get_tokenizer()("warm up")

    @property
    def description(self) -> str:
        return "Runs the agents the Agents API creates and the Responses API's responses."

    def models(self) -> list[str]:
        return sorted(self._models)

    def input_schema(self) -> dict[str, Any]:
        return TurnInput.model_json_schema()

    @property
    def accepted_event_types(self) -> list[str]:
        return [ae.ClientToolResponses.TYPE, "HumanResponseEvent"]

    def make_event(self, type_name: str, payload: dict[str, Any]) -> Event:
        short = type_name.rpartition(".")[2]
        if short == "ClientToolResponses":
            return ClientToolResponses(**payload)
        if short == "HumanResponseEvent":
            return HumanResponseEvent(**payload)
        raise KeyError(type_name)

    async def aclose(self) -> None:
        """Close the HTTP connections of the models built here (an LLM given as one is
        its giver's to close); the runner serves no turn after."""
        clients, self._clients = self._clients, []
        for client in clients:
            await client.close()

    def llm(self, model_id: str, sampling: dict[str, Any]) -> LLM:
        """The model `model_id` with these sampling settings: one instance each, so that
        its HTTP connections are kept and reused."""
        key = (model_id, json.dumps(sampling, sort_keys=True))
        llm = self._llms.get(key)
        if llm is None:
            model = self._models.get(model_id)
            if model is None:
                raise InvalidArgumentError(
                    f"agent_config.model: {model_id!r} is not a model of this agent service "
                    f"({self.models()})",
                    field="agent_config.model",
                )
            if isinstance(model, LLM):
                llm = model
            else:
                llm = chat_model(model_id, model, sampling, self._clients)
            self._llms[key] = llm
        return llm

    def build(self, config: agents_pb2.AgentConfig, turn: TurnInput) -> ConfiguredAgent:
        sampling = agent_config.sampling_kwargs(config)
        if config.HasField("response_format"):
            schema = json_format.MessageToDict(
                config.response_format.json_schema_format.json_schema
            )
            sampling["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": schema},
            }
        client: list[BaseTool | Callable[..., Any]] = [
            ClientTool(t.name, t.description, agent_config.parameters_schema(t))
            for t in config.client_tools
        ]
        client += [ClientTool(t.name, t.description, t.parameters) for t in turn.function_tools]
        services = [*agent_config.toolgroup_names(config), *turn.toolgroups]
        choice = turn.tool_choice or agent_config.tool_choice(config)
        offered = choice != "none"
        return ConfiguredAgent(
            name=config.name or "agent",
            description=config.name or "An agent of the Agents API.",
            system_prompt=turn.instructions
            if turn.instructions is not None
            else config.instructions,
            llm=self.llm(config.model, sampling),
            tools=client if offered else [],
            tool_retriever=MeshTools(*services) if services and offered else None,
            client_tool_names=frozenset(
                t.metadata.get_name() for t in client if isinstance(t, BaseTool)
            ),
            client_tools=turn.client_tools,
            input_shields=list(config.input_shields),
            output_shields=list(config.output_shields),
            initial_tool_choice=None if choice in ("auto", "none") else choice,
            timeout=None,
        )

    async def run(
        self, kwargs: dict[str, Any], saved_context: dict[str, Any] | None, on_event: OnEvent
    ) -> RunOutcome:
        try:
            turn = TurnInput.model_validate(kwargs)
            config = json_format.ParseDict(turn.agent_config, agents_pb2.AgentConfig())
        except (ValidationError, json_format.ParseError) as err:
            raise InvalidArgumentError(f"invalid turn input: {err}") from None
        agent = self.build(config, turn)
        new = [_chat_message(m) for m in turn.messages]
        agent._new_messages = [{"role": m["role"], "content": m["content"]} for m in new]
        history = (
            [m.model_dump(exclude_none=True) for m in turn.chat_history]
            if turn.chat_history is not None
            else list((saved_context or {}).get("chat_history") or [])
        )
        run: dict[str, Any] = {"max_iterations": agent_config.max_infer_iters(config)}
        if new and new[-1]["role"] == "user":
            run["user_msg"] = new[-1]["content"]
            run["chat_history"] = [*history, *new[:-1]]
        else:
            run["chat_history"] = [*history, *new]
        if not run.get("user_msg") and not any(
            m.get("role") == "user" for m in run["chat_history"]
        ):
            # llama-index's agent needs one to start from (IndexError without).
            raise InvalidArgumentError(
                "a turn needs a user's message: its messages have none, nor has the "
                "conversation before it (a tool message answers a call of an earlier turn)"
            )
        return await _TurnRunner(agent).run(run, None, on_event)
