"""The input of a task of the built-in agent service: one turn of a configured agent.

The Agents API (a turn of an agent it created) and the Responses API (a response of
a model or an agent) write it; the built-in agent service (worker/configured_agent.py)
reads it. Pure pydantic, like the agent vocabulary.

    >>> TurnInput(agent_id="a1", agent_config={"model": "m", "instructions": ""},
    ...           messages=[{"role": "user", "content": "hi"}]).client_tools
    'wait'
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llama_mesh.core.agent_events import ChatMessageInput


class FunctionToolSpec(BaseModel):
    """A tool the caller runs, described by a JSON Schema (the Responses API's
    function tools)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class TurnInput(BaseModel):
    """One turn of an agent given by its configuration."""

    model_config = ConfigDict(extra="forbid")
    agent_id: str = Field(description="The agent (informative: the configuration is below).")
    agent_config: dict[str, Any] = Field(
        description="The agent's AgentConfig, as JSON with proto field names."
    )
    messages: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The turn's new messages: llama-stack user ({role, content, context}) "
        "and tool ({role, call_id, content}) messages.",
    )
    chat_history: list[ChatMessageInput] | None = Field(
        default=None,
        description="The conversation before `messages` (llama-index ChatMessage JSON). "
        "Unset: the session's conversation, which the turn then continues.",
    )
    instructions: str | None = Field(
        default=None, description="Replaces the configuration's instructions for this turn."
    )
    toolgroups: list[str] = Field(
        default_factory=list, description="More tool services for this turn."
    )
    function_tools: list[FunctionToolSpec] = Field(
        default_factory=list, description="More client tools for this turn, as JSON Schemas."
    )
    tool_choice: str | None = Field(default=None, description="Overrides the configuration's.")
    client_tools: Literal["wait", "return"] = Field(
        default="wait",
        description="A call of a client tool makes the turn wait for the caller's responses "
        "(`wait`: the Agents API), or ends the run with the calls (`return`: the Responses "
        "API's function calls).",
    )
