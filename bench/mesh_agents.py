"""Agents the bench serves, on the scripted model at $SCRIPTED_MODEL_URL."""

from __future__ import annotations

import os

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.llms.openai_like import OpenAILike


def talker() -> FunctionAgent:
    """Answers with whatever the scripted model streams."""
    return FunctionAgent(
        name="talker",
        llm=OpenAILike(
            model="scripted",
            api_base=os.environ["SCRIPTED_MODEL_URL"],
            api_key="none",
            is_chat_model=True,
            is_function_calling_model=True,
            max_retries=0,
        ),
    )
