"""Agents the bench serves, on the scripted model at $SCRIPTED_MODEL_URL."""

from __future__ import annotations

import os

from llama_index.core.agent.workflow import FunctionAgent

from llama_mesh.config.models import ModelConfig
from llama_mesh.worker.models import build_llm


def talker() -> FunctionAgent:
    """Answers with whatever the scripted model streams, through the LLM a deployment's
    `models:` entry makes (OpenAILike on the mesh's model client)."""
    config = ModelConfig(base_url=os.environ["SCRIPTED_MODEL_URL"], model="scripted")
    return FunctionAgent(name="talker", llm=build_llm("scripted", config, max_retries=0))
