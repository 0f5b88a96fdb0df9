"""An agent whose tools run in another service: MeshTools turns the tools the
`secret_tools` service publishes into llama-index tools; each call is a child task."""

from __future__ import annotations

from llama_index.core.agent.workflow import FunctionAgent
from model import model

from llama_mesh import MeshTools


def secret_fact_agent() -> FunctionAgent:
    return FunctionAgent(
        name="secret_fact_agent",
        description="Useful for getting the secret fact.",
        tool_retriever=MeshTools("secret_tools"),
        llm=model(),
    )
