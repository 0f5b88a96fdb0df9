"""The models of a deployment (`models:`): OpenAI-compatible chat endpoints, by id.

    ModelConfig(base_url="http://127.0.0.1:8000/v1", model="llama3", api_key_env="LLM_KEY")

The built-in agent service runs the Agents API's agents and the Responses API's
responses on them (through llama-index's OpenAI-compatible LLM class); agents and the
Responses API name them by id.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from llama_mesh.config.fields import Settings


class ModelConfig(Settings):
    """One model: an OpenAI-compatible chat-completions endpoint."""

    base_url: Annotated[
        str, Field(description="The endpoint's base URL, e.g. `http://127.0.0.1:8000/v1`.")
    ]
    model: Annotated[
        str | None, Field(description="The model's name at the endpoint (default: the id).")
    ] = None
    api_key_env: Annotated[
        str | None,
        Field(description="Environment variable holding the API key (none: no key sent)."),
    ] = None
    timeout: Annotated[float, Field(gt=0, description="Seconds a model call may take.")] = 120.0
    max_retries: Annotated[
        int, Field(ge=0, description="Retries of a failed call by the OpenAI client.")
    ] = 2
    context_window: Annotated[
        int, Field(gt=0, description="Tokens the model reads: the conversation is cut to fit.")
    ] = 131072
    function_calling: Annotated[
        bool, Field(description="The endpoint takes OpenAI `tools` (function calling).")
    ] = True
