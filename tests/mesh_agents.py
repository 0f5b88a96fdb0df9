"""Agents served in the tests, on the scripted model at $SCRIPTED_MODEL_URL.

Importable by replicas in child processes (`llama-mesh serve service
mesh_agents:assistant`), like mesh_workflows.py.
"""

from __future__ import annotations

import os

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.llms.openai_like import OpenAILike

SYSTEM_PROMPT = "You are a terse assistant."


def scripted_llm(url: str | None = None) -> OpenAILike:
    """An OpenAI-compatible LLM on the scripted model, as `models:` would build it."""
    return OpenAILike(
        model="scripted",
        api_base=url or os.environ["SCRIPTED_MODEL_URL"],
        api_key="none",
        is_chat_model=True,
        is_function_calling_model=True,
        max_retries=0,
        timeout=30,
    )


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def assistant(url: str | None = None) -> FunctionAgent:
    """Adds numbers when asked."""
    return FunctionAgent(
        name="assistant",
        description="Adds numbers when asked.",
        tools=[add],
        llm=scripted_llm(url),
        system_prompt=SYSTEM_PROMPT,
    )
