"""The models of a deployment: OpenAI-compatible chat-completions endpoints, by id.

    models = {"local": ModelConfig(base_url="http://127.0.0.1:11434/v1", model="llama3.1")}

The deployment file's ``models:`` section (an id → a ModelConfig). Agents name a model
by its id (``kind: agent`` services' ``model:``, the Agents API's ``AgentConfig.model``,
the Responses API's ``model``); the process that runs the agent builds llama-index's
``OpenAILike`` LLM from the ModelConfig (``llama_mesh.worker.models.build_llm``, for the
file's agents and the built-in agent service alike). The API key is read there from the
environment variable the config names: no secret is written in the file or passed on a
command line.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

from llama_mesh.config.fields import DefaultText, Settings, matching

# Ids as llama-stack clients write them too ("meta-llama/Llama-3.1-8B-Instruct").
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
MODEL_ID_RULE = "1-128 of letters, digits and `_ . : / -`, starting with a letter or digit"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


def valid_model_id(value: str) -> str:
    """`value` if it is a model id; else ValueError (a validation error in a model)."""
    if not MODEL_ID.fullmatch(value):
        raise ValueError(f"{value!r} is not a model id: {MODEL_ID_RULE}")
    return value


ModelId = Annotated[str, AfterValidator(valid_model_id)]


class ModelConfig(Settings):
    """One model: an OpenAI-compatible chat-completions endpoint and what to ask it."""

    base_url: Annotated[
        str,
        matching(
            URL,
            "an http(s) URL",
            "the API's base, e.g. http://127.0.0.1:11434/v1 (with /v1, no query)",
        ),
        Field(description="The API's base URL, e.g. `http://127.0.0.1:11434/v1`."),
    ]
    model: Annotated[
        str | None,
        DefaultText("the id"),
        Field(min_length=1, description="The model's name at the endpoint."),
    ] = None
    api_key_env: Annotated[
        str | None,
        matching(
            ENV_NAME,
            "an environment variable name",
            "letters, digits and '_', not starting with a digit",
        ),
        DefaultText("none: no key is sent"),
        Field(
            description="Name of the environment variable that holds the API key, in the "
            "processes that run agents (never the key itself)."
        ),
    ] = None
    timeout: Annotated[float, Field(gt=0, description="Seconds one request may take.")] = 120.0
    max_retries: Annotated[
        int,
        Field(
            ge=0,
            le=10,
            description="Retries of a request that could not connect or got 429 or 5xx.",
        ),
    ] = 2
    context_window: Annotated[
        int,
        Field(
            ge=256,
            description="Tokens the model reads; an agent's conversation is cut to fit.",
        ),
    ] = 131072
    max_tokens: Annotated[
        int | None,
        DefaultText("the endpoint's"),
        Field(gt=0, description="Tokens one answer may have."),
    ] = None
    temperature: Annotated[
        float | None,
        DefaultText("llama-index's (`0.1`)"),
        Field(ge=0, le=2, description="Sampling temperature."),
    ] = None
    function_calling: Annotated[
        bool,
        Field(
            description="The endpoint takes OpenAI `tools`. Off, an agent of the file "
            "calls its tools by ReAct prompting instead."
        ),
    ] = True

    def name(self, model_id: str) -> str:
        """The model's name at the endpoint: `model`, else its id."""
        return self.model or model_id
