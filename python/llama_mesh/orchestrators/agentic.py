"""The agentic orchestrator: a model decides which services a task goes through.

    AgenticOrchestrator(llm=OpenAILike(model=..., api_base=..., is_function_calling_model=True))

The model sees the task's request and every routable service as a function (its name,
its description, its input schema). Each function call it makes is a hop (calls in one
reply run concurrently); each hop's result goes back to it as the function's result (an
error as an error message); when it replies without calling anything, its reply is the
task's result. The llama-agents README's example is this: "What is the secret fact?"
goes to ``secret_fact_agent`` because its description says it knows the secret fact.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.llms.function_calling import FunctionCallingLLM

from llama_mesh.orchestrators.plugin import (
    Decision,
    Finish,
    Hop,
    HopResult,
    Next,
    Orchestrator,
    Run,
)
from llama_mesh.worker.mesh_tools import ServiceTool, as_text

DEFAULT_SYSTEM_PROMPT = (
    "You route a request through services. Each function is a service: call the one "
    "that can best handle the request, or several at once when they are independent. "
    "When you have what the request asks for, reply with the answer as plain text "
    "without calling a function."
)


class AgenticOrchestrator(Orchestrator):
    """Routes by asking a function-calling model."""

    description = "Routes a request to the services that can answer it, chosen by a model."

    def __init__(
        self,
        llm: FunctionCallingLLM,
        *,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_decisions: int = 10,
    ) -> None:
        if not llm.metadata.is_function_calling_model:
            raise ValueError(
                f"{type(llm).__name__} is not set up as a function-calling model "
                "(for OpenAILike, pass is_function_calling_model=True)"
            )
        self.llm = llm
        self.system_prompt = system_prompt
        self.max_decisions = max_decisions

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"user_msg": {"type": "string", "description": "The request."}},
        }

    async def next_hops(self, run: Run) -> Decision:
        messages: list[ChatMessage] = run.state.setdefault("messages", [])
        if not messages:
            messages.append(ChatMessage(role=MessageRole.SYSTEM, content=self.system_prompt))
            messages.append(ChatMessage(role=MessageRole.USER, content=as_text(run.user_msg)))
        tools = [
            ServiceTool.whole(s.name, s.kind, s.description, s.input_schema) for s in run.services
        ]
        response = await self.llm.achat_with_tools(
            tools, chat_history=list(messages), allow_parallel_tool_calls=True
        )
        messages.append(response.message)
        calls = self.llm.get_tool_calls_from_response(response, error_on_no_tool_call=False)
        if not calls:
            return Finish(response.message.content or "", reason="the model answered")
        hops = [Hop(c.tool_name, dict(c.tool_kwargs), id=c.tool_id) for c in calls]
        reason = response.message.content or "the model called " + ", ".join(
            h.service for h in hops
        )
        return Next(hops, reason=reason)

    async def add_result(self, run: Run, result: HopResult) -> None:
        service = run.service(result.hop.service)
        if not result.ok:
            content = f"Error: {result.hop.service} failed: {result.error or result.error_type}"
        else:
            content = as_text(service.output(result.result) if service else result.result)
        run.state["messages"].append(
            ChatMessage(
                role=MessageRole.TOOL,
                content=content,
                additional_kwargs={"tool_call_id": result.hop.id, "name": result.hop.service},
            )
        )
