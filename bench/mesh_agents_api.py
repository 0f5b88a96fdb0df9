"""The built-in agent service for the Agents API bench, on the scripted model at
$SCRIPTED_MODEL_URL (`llama-mesh serve service mesh_agents_api:agents --name agents`)."""

from __future__ import annotations

import os

from llama_mesh.config import ModelConfig
from llama_mesh.worker.configured_agent import ConfiguredAgentRunner


def agents() -> ConfiguredAgentRunner:
    url = os.environ["SCRIPTED_MODEL_URL"]
    return ConfiguredAgentRunner({"scripted": ModelConfig(base_url=url, max_retries=0)})
