"""The model every agent example uses: any OpenAI-compatible endpoint.

By default a local Ollama (`ollama serve`, then `ollama pull llama3.1`); set
OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1 for vLLM or llama.cpp's server),
LLAMA_MESH_MODEL and OPENAI_API_KEY to use another.

Built as a deployment file's `models:` entry is (ModelConfig, build_llm): with its
retries and its error, "cannot connect to the model at URL (...): is its server
running?", when nothing answers there.
"""

from __future__ import annotations

import os

from llama_index.llms.openai import OpenAI

from llama_mesh.config.models import ModelConfig
from llama_mesh.worker.models import build_llm


def model() -> OpenAI:
    config = ModelConfig(
        base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1"),
        model=os.environ.get("LLAMA_MESH_MODEL", "llama3.1"),
        # The key is read from the variable it names; an endpoint without one gets none.
        api_key_env="OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") else None,
    )
    return build_llm("local", config)
