"""What a service of a deployment file runs, built in the process that serves it.

    workflow = build_service(load_deployment("deployment.yaml"), "secret_tools")

A service with a `source` runs that Workflow; `kind: tools` runs a ToolService of its
`tools`; `kind: human` a HumanService with its `prompt`; `kind: agent` with a `model`
an agent (in an AgentRunner that closes the model's client with the replica) built from
the model, its `tools`, `mesh_tools` and `system_prompt`; the
`orchestrator` section (service id "orchestrator") a pipeline of its `steps` or the
Orchestrator its `source` names; the `models:` section the built-in agent service
(service id "agents"), which runs the Agents API's agents and the Responses API.
`up` passes each replica the file and the service id (`serve service --deployment FILE
--name ID`), and `check` builds every one before anything starts.

Each kind imports what it runs when it is built: a replica (and `check`) of a file of
plain workflows does not load llama-index's agents, the orchestrators or the OpenAI
client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llama_mesh.core.names import AGENTS_SERVICE, ORCHESTRATOR_SERVICE
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.loader import WorkflowLoadError, load_object, load_tool, load_workflow

if TYPE_CHECKING:
    from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
    from workflows import Workflow

    from llama_mesh.launch.deployment import Deployment
    from llama_mesh.launch.service_specs import ServiceSpec
    from llama_mesh.orchestrators import OrchestratorWorkflow
    from llama_mesh.worker.models import ModelRegistry
    from llama_mesh.worker.workflow_runner import WorkflowRunner


def build_service(d: Deployment, name: str) -> Workflow | WorkflowRunner:
    """The Workflow service `name` of `d` runs (WorkflowLoadError if it cannot be built)."""
    if name == ORCHESTRATOR_SERVICE and d.orchestrator.deployed and name not in d.services:
        return build_orchestrator(d)
    if name == AGENTS_SERVICE and d.runs_agents_service:
        from llama_mesh.worker.configured_agent import ConfiguredAgentRunner

        return ConfiguredAgentRunner(d.models)
    spec = d.services.get(name)
    if spec is None:
        raise WorkflowLoadError(f"the deployment file has no service {name!r}")
    path = d.service_path(spec)
    if spec.kind == resources_pb2.SERVICE_KIND_TOOL:
        from llama_mesh.worker.tool_service import ToolService

        tools = [load_tool(reference, path) for reference in spec.tools]
        return ToolService(tools, description=spec.description or "")
    if spec.kind == resources_pb2.SERVICE_KIND_HUMAN:
        from llama_mesh.worker.human_service import DEFAULT_PROMPT, HumanService

        return HumanService(spec.prompt or DEFAULT_PROMPT, description=spec.description or "")
    if spec.kind == resources_pb2.SERVICE_KIND_AGENT and spec.model is not None:
        from llama_mesh.worker.agent_runner import AgentRunner
        from llama_mesh.worker.models import ModelRegistry

        # The runner owns the model clients built for the agent: the replica closes it.
        models = ModelRegistry(d.models)
        return AgentRunner(build_agent(d, name, spec, models), models)
    if spec.source is None:
        raise WorkflowLoadError(f"service {name!r} has no source")
    return load_workflow(spec.source, path)


def build_agent(
    d: Deployment, name: str, spec: ServiceSpec, models: ModelRegistry
) -> FunctionAgent | ReActAgent:
    """The agent of `kind: agent` service `name`, built from its `model` (an LLM of
    `models`, whose owner closes it): a FunctionAgent, or a ReActAgent when the model
    does not take OpenAI `tools` (`function_calling: false`)."""
    from llama_index.core.agent.workflow import FunctionAgent, ReActAgent

    from llama_mesh.worker.mesh_tools import MeshTools

    assert spec.model is not None
    config = d.models[spec.model]
    path = d.service_path(spec)
    options: dict[str, Any] = {
        "name": name,
        "tools": [load_tool(reference, path) for reference in spec.tools],
        "llm": models.llm(spec.model),
    }
    if spec.mesh_tools:
        options["tool_retriever"] = MeshTools(*spec.mesh_tools)
    if spec.description is not None:
        options["description"] = spec.description
    if spec.system_prompt is not None:
        options["system_prompt"] = spec.system_prompt
    return FunctionAgent(**options) if config.function_calling else ReActAgent(**options)


def build_orchestrator(d: Deployment) -> OrchestratorWorkflow:
    """The orchestrator service of `d`'s `orchestrator` section."""
    from llama_mesh.orchestrators import Orchestrator, OrchestratorWorkflow, Pipeline, Step

    section = d.orchestrator
    orchestrator: Any
    if section.kind == "pipeline":
        orchestrator = Pipeline(
            [
                Step(
                    s.service,
                    s.input_key,
                    id=s.id or "",
                    after=None if s.after is None else tuple(s.after),
                )
                for s in section.pipeline_steps
            ]
        )
    else:
        assert section.source is not None
        path = d.resolve(section.path) if section.path is not None else d.base_dir
        orchestrator = load_object(section.source, path, "orchestrator")
        if isinstance(orchestrator, type) or (
            callable(orchestrator) and not isinstance(orchestrator, Orchestrator)
        ):
            orchestrator = orchestrator()
        if not isinstance(orchestrator, Orchestrator):
            raise WorkflowLoadError(
                f"{section.source!r} is a {type(orchestrator).__name__}, not an Orchestrator"
            )
    return OrchestratorWorkflow(orchestrator)
