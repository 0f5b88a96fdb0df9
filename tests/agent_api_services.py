"""The built-in agent service for replicas in child processes (`llama-mesh serve service
agent_api_services:agents --name agents`), on the scripted model at
$SCRIPTED_MODEL_URL."""

from __future__ import annotations

import os

from llama_mesh.config import ModelConfig
from llama_mesh.worker.configured_agent import ConfiguredAgentRunner


def agents() -> ConfiguredAgentRunner:
    url = os.environ["SCRIPTED_MODEL_URL"]
    return ConfiguredAgentRunner({"scripted": ModelConfig(base_url=url, max_retries=0)})
