"""The model of the built-in agent service: OpenAILike, answering from the record of
an earlier attempt when a turn runs again (model_replay.py).

Only the built-in agent service imports this module (and with it the OpenAI client),
not every replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The OpenAI client imports its resources on its first call (seconds): import them with
# this module, as the agent service starts, not in the event loop of its first turn.
import openai.resources.chat  # noqa: F401
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.llms.openai_like import OpenAILike

from llama_mesh.core import agent_events as ae
from llama_mesh.worker.model_replay import take_recorded


def _response(message: ae.AssistantMessage) -> ChatResponse:
    blocks: list[Any] = [TextBlock(text=message.content)] if message.content else []
    blocks += [
        ToolCallBlock(tool_call_id=c.call_id, tool_name=c.tool_name, tool_kwargs=c.arguments)
        for c in message.tool_calls
    ]
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks),
        delta=message.content,
    )


class ReplayingLLM(OpenAILike):  # type: ignore[misc]
    """An OpenAI-compatible model whose calls are answered from the record when the
    turn runs again (see the module docstring); otherwise it is OpenAILike."""

    @classmethod
    def class_name(cls) -> str:
        return "ReplayingLLM"

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        recorded = take_recorded()
        if recorded is None:
            response: ChatResponse = await super().achat(messages, **kwargs)
            return response
        return _response(recorded)

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        recorded = take_recorded()
        if recorded is None:
            stream: ChatResponseAsyncGen = await super().astream_chat(messages, **kwargs)
            return stream
        response = _response(recorded)

        async def replay() -> ChatResponseAsyncGen:
            yield response

        return replay()
