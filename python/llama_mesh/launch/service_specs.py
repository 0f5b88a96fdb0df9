"""The sections of a deployment file below the top level: a service, a pipeline's step,
the orchestrator.

    services:
      echo: {source: workflows:echo, replicas: 2}         # ServiceSpec
      helper: {kind: agent, model: local, tools: [tools:add]}
    orchestrator: {kind: pipeline, steps: [draft, publish]}  # OrchestratorSpec, StepSpec

Each validates what it can alone; what depends on the rest of the file (a step naming a
service of the file, what a kind of service needs) is checked by deployment_checks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from llama_mesh.config import DefaultText, ServiceSettings, Settings, valid_service_id
from llama_mesh.config.fields import matching
from llama_mesh.config.models import ModelId
from llama_mesh.core.prompt_template import check_prompt

SOURCE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def _reference(what: str, example: str) -> AfterValidator:
    return matching(
        SOURCE,
        f"a {what} reference",
        f"expected 'module:attribute' (e.g. '{example}'), where module is importable from `path`",
    )


WorkflowReference = Annotated[str, _reference("workflow", "workflows:echo")]
ToolReference = Annotated[str, _reference("tool", "tools:get_weather")]
OrchestratorReference = Annotated[str, _reference("orchestrator", "routing:orchestrator")]


class _Source(Settings):
    """Where a service's workflow comes from (first in the file's service section)."""

    source: Annotated[
        WorkflowReference | None,
        DefaultText("none (`kind: tools`, `kind: human` and an agent with a `model` need none)"),
        Field(
            description="`module:attribute`: a Workflow instance, a Workflow subclass (made "
            "with no arguments) or a function returning a Workflow."
        ),
    ] = None
    path: Annotated[
        Path | None,
        DefaultText("the file's directory"),
        Field(description="Directory added to the import path before importing `module`."),
    ] = None


class ServiceSpec(ServiceSettings, _Source):
    """One service of the file: its workflow, how it is served (ServiceSettings: the
    same settings as ServiceConfig, the id being the key in ``services``), and how
    many replicas of it run with which environment."""

    replicas: Annotated[
        int,
        Field(
            ge=1,
            le=64,
            description="Processes serving it (1-64). They share one durable JetStream consumer.",
        ),
    ] = 1
    env: Annotated[
        dict[str, str],
        Field(
            description="Environment variables of its replicas (values become strings). "
            "Also set while `up`/`check` import the workflow."
        ),
    ] = Field(default_factory=dict)
    tools: Annotated[
        list[ToolReference],
        Field(
            description="`kind: tools`: the tools it serves; `kind: agent` with a `model`: the "
            "tools the agent calls in its own process. `module:attribute` references to "
            "llama-index tools or plain functions (sync or async)."
        ),
    ] = Field(default_factory=list)
    model: Annotated[
        ModelId | None,
        DefaultText("none"),
        Field(
            description="`kind: agent`: the id of a model of `models:`; the agent is built "
            "from it, `tools`, `mesh_tools` and `system_prompt` (no `source`)."
        ),
    ] = None
    system_prompt: Annotated[
        str | None,
        DefaultText("none"),
        Field(description="`kind: agent` with a `model`: the agent's system prompt."),
    ] = None
    mesh_tools: Annotated[
        list[str],
        Field(
            description="`kind: agent` with a `model`: services of the mesh offered to the "
            "agent as tools (each tool of a tool service; any other service as one tool), "
            "called as child tasks."
        ),
    ] = Field(default_factory=list)
    prompt: Annotated[
        str | None,
        DefaultText("`A task needs your answer:` and the question"),
        Field(
            description="`kind: human`: what a person sees; `{input_str}` is replaced by the "
            "question."
        ),
    ] = None

    @field_validator("mesh_tools")
    @classmethod
    def _mesh_tools(cls, value: list[str]) -> list[str]:
        return [valid_service_id(service, "mesh tool service") for service in value]

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        return None if value is None else check_prompt(value)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                str(k): (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in value.items()
                if v is not None
            }
        return value


class StepSpec(Settings):
    """One step of a pipeline: a service, and which of its input fields gets the value
    before it (by default its one input field)."""

    service: Annotated[str, Field(description="The step's service id.")]
    input_key: Annotated[
        str | None,
        DefaultText("the service's one input field"),
        Field(description="The input field the previous step's output goes into."),
    ] = None
    id: Annotated[
        str | None,
        DefaultText("the service id"),
        Field(description="How `after` of other steps names this step."),
    ] = None
    after: Annotated[
        list[str] | None,
        DefaultText("the step before it"),
        Field(
            description="The steps (ids, listed before this one) whose outputs it takes; "
            "`[]`: none, it takes what the task asks. Steps that can run at once do."
        ),
    ] = None

    @property
    def name(self) -> str:
        return self.id or self.service

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        return valid_service_id(value, "step service")


class OrchestratorSpec(Settings):
    """What routes a task that names no service (docs/agents.md, Orchestrators)."""

    kind: Annotated[
        Literal["simple", "pipeline", "agentic"],
        Field(
            description="`simple`: a task must name its service. `pipeline`: `steps` in "
            "order. `agentic`: a model picks the services (`source`)."
        ),
    ] = "simple"
    steps: Annotated[
        list[str | StepSpec],
        Field(
            description="`kind: pipeline`: service ids, or `{service, input_key, id, after}`, "
            "in order; each step's output is the next one's input (or, with `after`, a DAG)."
        ),
    ] = Field(default_factory=list)
    source: Annotated[
        OrchestratorReference | None,
        DefaultText("none"),
        Field(
            description="`module:attribute` of an Orchestrator (an AgenticOrchestrator with "
            "its model, or your own); for `agentic`, and for `simple` to run your own."
        ),
    ] = None
    path: Annotated[
        Path | None,
        DefaultText("the file's directory"),
        Field(description="Directory added to the import path before importing `source`."),
    ] = None
    replicas: Annotated[
        int, Field(ge=1, le=64, description="Processes serving the orchestrator.")
    ] = 1
    max_concurrency: Annotated[
        int, Field(ge=1, le=10_000, description="Tasks one replica routes at once.")
    ] = 256
    timeout: Annotated[
        float | None, Field(gt=0, description="Default timeout of a routed task, in seconds.")
    ] = None

    @property
    def deployed(self) -> bool:
        """Whether `up` runs an orchestrator service (anything but plain `simple`)."""
        return self.kind != "simple" or self.source is not None

    @property
    def pipeline_steps(self) -> list[StepSpec]:
        return [s if isinstance(s, StepSpec) else StepSpec(service=s) for s in self.steps]
