"""Test support that ships with llama-mesh: a scripted OpenAI-compatible model server.

    from llama_mesh.testing import Reply, ScriptedModel, ToolCall

The project's own tests and benchmarks use it, and so can yours: it is the one fake a
test of an agent needs (see docs/agents.md, "Testing agents").
"""

from __future__ import annotations

from llama_mesh.testing.script import Pause, RecordedRequest, Reply, ToolCall, Usage
from llama_mesh.testing.scripted_model import ScriptedModel

__all__ = ["Pause", "RecordedRequest", "Reply", "ScriptedModel", "ToolCall", "Usage"]
