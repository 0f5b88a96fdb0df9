"""The model every agent example uses: any OpenAI-compatible endpoint.

By default a local Ollama (`ollama serve`, then `ollama pull llama3.1`); set
OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1 for vLLM or llama.cpp's server),
LLAMA_MESH_MODEL and OPENAI_API_KEY to use another.
"""

from __future__ import annotations

import os

from llama_index.llms.openai_like import OpenAILike


def model() -> OpenAILike:
    return OpenAILike(
        model=os.environ.get("LLAMA_MESH_MODEL", "llama3.1"),
        api_base=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1"),
        api_key=os.environ.get("OPENAI_API_KEY", "none"),
        is_chat_model=True,
        is_function_calling_model=True,
        timeout=120,
    )
