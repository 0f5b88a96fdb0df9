"""The LLMs of a deployment's models: llama-index's OpenAI-compatible class.

    llm = build_llm("local", ModelConfig(base_url="http://127.0.0.1:11434/v1"))
    llms = ModelRegistry({"local": ModelConfig(...), "mine": MyLLM()})
    llms.llm("local")          # one instance per id: its HTTP connections are reused
    await llms.aclose()        # ... and closed

Python users may give any llama-index ``LLM`` instead of a ModelConfig. OpenAI-style
LLMs are asked for their streamed token usage by the agent runner
(llm_usage.ask_for_stream_usage), whichever way they were made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from llama_index.core.llms import LLM
from llama_index.llms.openai import OpenAI
from llama_index.llms.openai_like import OpenAILike

from llama_mesh.config.models import ModelConfig
from llama_mesh.worker.model_client import ModelClient

# The OpenAI client wants a key even for endpoints that need none.
NO_KEY = "none"


class ModelKeyMissingError(ValueError):
    """The environment variable that should hold a model's API key is not set."""


class UnknownModelError(LookupError):
    """An agent names a model id the deployment does not have."""


def api_key(model_id: str, config: ModelConfig) -> str:
    """The model's key, read from ``$api_key_env`` now (ModelKeyMissingError if unset)."""
    if config.api_key_env is None:
        return NO_KEY
    key = os.environ.get(config.api_key_env, "")
    if not key:
        raise ModelKeyMissingError(
            f"model {model_id!r}: the environment variable {config.api_key_env} that holds "
            "its API key is not set"
        )
    return key


def build_llm(
    model_id: str,
    config: ModelConfig,
    cls: type[OpenAI] = OpenAILike,
    **overrides: Any,
) -> OpenAI:
    """The LLM of model `model_id`: an ``OpenAILike`` (or the subclass `cls`) with the
    config's endpoint, key and limits; `overrides` replace or add constructor arguments
    (sampling settings of one agent, say)."""
    options: dict[str, Any] = {
        "model": config.name(model_id),
        "api_base": config.base_url,
        "api_key": api_key(model_id, config),
        "timeout": config.timeout,
        "max_retries": config.max_retries,
        "context_window": config.context_window,
        "max_tokens": config.max_tokens,
        "is_chat_model": True,
        "is_function_calling_model": config.function_calling,
    }
    if config.temperature is not None:
        options["temperature"] = config.temperature
    options = {**options, **overrides}
    # The client llama-index would make, sending the conversation without the SDK's
    # per-message walk (model_client.py); made only if not given (not setdefault's
    # argument: that one would be made, never used and never closed).
    if "async_openai_client" not in options:
        options["async_openai_client"] = ModelClient(
            api_key=options["api_key"],
            base_url=options["api_base"],
            max_retries=options["max_retries"],
            timeout=options["timeout"],
        )
    return cls(**options)


def model_client(model_id: str, config: ModelConfig) -> ModelClient:
    """The OpenAI client of model `model_id` (its endpoint, key and limits), for an LLM
    whose owner closes it (``build_llm(..., async_openai_client=client)``)."""
    return ModelClient(
        api_key=api_key(model_id, config),
        base_url=config.base_url,
        max_retries=config.max_retries,
        timeout=config.timeout,
    )


class ModelRegistry:
    """The models an agent may name, by id: each built once, when first asked for.

    Values given as LLMs are used as they are (and are their giver's to close); the
    HTTP clients of the LLMs it built are its own, closed by ``aclose``.
    """

    def __init__(self, models: Mapping[str, ModelConfig | LLM] | None = None) -> None:
        self._models = dict(models or {})
        self._built: dict[str, LLM] = {}
        self._clients: list[ModelClient] = []

    async def aclose(self) -> None:
        """Close the HTTP connections of the LLMs built here; build none after."""
        clients, self._clients = self._clients, []
        for client in clients:
            await client.close()

    def config(self, model_id: str) -> ModelConfig | LLM:
        """What `model_id` was given as; UnknownModelError names the ids there are."""
        try:
            return self._models[model_id]
        except KeyError:
            known = ", ".join(self.ids()) or "none"
            raise UnknownModelError(
                f"{model_id!r} is not a model of this deployment (models: {known})"
            ) from None

    def llm(self, model_id: str) -> LLM:
        """The LLM of `model_id`, built on first use."""
        built = self._built.get(model_id)
        if built is None:
            given = self.config(model_id)
            if isinstance(given, LLM):
                built = given
            else:
                client = model_client(model_id, given)
                self._clients.append(client)
                built = build_llm(model_id, given, async_openai_client=client)
            self._built[model_id] = built
        return built

    def ids(self) -> list[str]:
        return sorted(self._models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models
