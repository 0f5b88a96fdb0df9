"""Orchestrators: what decides where a task that names no service goes.

    from llama_mesh.orchestrators import AgenticOrchestrator, Pipeline

    async with LocalMesh(services, orchestrator=Pipeline(["writer", "reviewer"])) as mesh:
        print(await mesh.client.run("Write about llamas"))

The control plane only routes: a task naming a service goes to it (the *simple*
orchestrator, always there); a task naming none goes to the deployed orchestrator, a
service of the mesh like any other (OrchestratorWorkflow). Write your own by
subclassing Orchestrator (plugin.py).
"""

from llama_mesh.orchestrators.agentic import AgenticOrchestrator
from llama_mesh.orchestrators.pipeline import (
    Pipeline,
    PipelineInputError,
    PipelineStepFailedError,
    Step,
)
from llama_mesh.orchestrators.plugin import (
    Decision,
    Finish,
    Hop,
    HopResult,
    Next,
    Orchestrator,
    Run,
    ServiceInfo,
)
from llama_mesh.orchestrators.serving import (
    DECISION,
    HOP_FINISHED,
    OrchestratorWorkflow,
    TooManyDecisionsError,
)

__all__ = [  # noqa: RUF022 (grouped by kind, like the imports above)
    # The plug-in interface
    "Decision",
    "Finish",
    "Hop",
    "HopResult",
    "Next",
    "Orchestrator",
    "Run",
    "ServiceInfo",
    # Orchestrators
    "AgenticOrchestrator",
    "Pipeline",
    "Step",
    # Serving one, and its events and errors
    "DECISION",
    "HOP_FINISHED",
    "OrchestratorWorkflow",
    "PipelineInputError",
    "PipelineStepFailedError",
    "TooManyDecisionsError",
]
