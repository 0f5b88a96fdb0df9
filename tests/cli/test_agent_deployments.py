"""Deployment files with tool services, human services and an orchestrator: what each
kind needs, checked before anything starts, and built as the replicas build them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llama_mesh.launch.deployment import DeploymentError, check_workflows, parse_deployment
from llama_mesh.launch.service_builder import build_service
from llama_mesh.orchestrators import OrchestratorWorkflow, Pipeline
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.human_service import HumanService
from llama_mesh.worker.tool_service import ToolService

TESTS = Path(__file__).resolve().parents[1]

VALID = f"""\
name: agents
services:
  secret_tools:
    kind: tools
    path: {TESTS}
    tools:
      - agent_services:get_the_secret_fact
      - agent_services:add
  reviewer:
    kind: human
    prompt: "Review:\\n{{input_str}}"
  publish:
    source: agent_services:PublishWorkflow
    path: {TESTS}
orchestrator:
  kind: pipeline
  steps: [reviewer, {{service: publish, input_key: text}}]
"""


def problems(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(DeploymentError) as caught:
        d = parse_deployment(text, tmp_path / "deployment.yaml")
        check_workflows(d, tmp_path / "deployment.yaml")
    return caught.value.problems


def test_each_kind_builds_what_it_names(tmp_path: Path) -> None:
    d = parse_deployment(VALID, tmp_path / "deployment.yaml")
    check_workflows(d, tmp_path / "deployment.yaml")
    tools = build_service(d, "secret_tools")
    assert isinstance(tools, ToolService)
    assert list(tools.tools) == ["get_the_secret_fact", "add"]
    assert d.services["secret_tools"].kind == resources_pb2.SERVICE_KIND_TOOL
    human = build_service(d, "reviewer")
    assert isinstance(human, HumanService)
    assert human.render("the draft") == "Review:\nthe draft"
    orchestrator = build_service(d, "orchestrator")
    assert isinstance(orchestrator, OrchestratorWorkflow)
    assert isinstance(orchestrator.orchestrator, Pipeline)
    assert [(s.service, s.input_key) for s in orchestrator.orchestrator.steps] == [
        ("reviewer", None),
        ("publish", "text"),
    ]


def test_a_tool_service_needs_tools_and_no_source(tmp_path: Path) -> None:
    text = VALID.replace(
        """    tools:
      - agent_services:get_the_secret_fact
      - agent_services:add
""",
        "    source: agent_services:secret_tools\n",
    )
    found = problems(text, tmp_path)
    assert found == [
        "services.secret_tools.kind (line 4): a tool service needs `tools`: "
        "module:attribute references",
        "services.secret_tools.source (line 6): a tool service has `tools`, not a `source`",
    ]


def test_a_tool_that_is_not_a_tool_is_named(tmp_path: Path) -> None:
    text = VALID.replace("agent_services:add", "agent_services:SECRET_FACT")
    [problem] = problems(text, tmp_path)
    assert problem == (
        "services.secret_tools.tools (line 6): 'agent_services:SECRET_FACT' is a str, "
        "not a llama-index tool or a function"
    )


def test_a_human_service_needs_no_code_and_a_prompt_with_input_str(tmp_path: Path) -> None:
    text = VALID.replace('prompt: "Review:\\n{input_str}"', 'prompt: "Review {draft}"')
    [problem] = problems(text, tmp_path)
    assert problem.startswith("services.reviewer.prompt (line 11): the prompt must contain")
    assert "['draft']" in problem
    text = VALID.replace("    kind: human\n", "    kind: human\n    source: x:y\n")
    [problem] = problems(text, tmp_path)
    assert (
        problem
        == "services.reviewer.source (line 11): a human service needs no code: remove `source`"
    )


def test_pipeline_steps_name_services_of_the_file(tmp_path: Path) -> None:
    text = VALID.replace("steps: [reviewer,", "steps: [reviewr,")
    [problem] = problems(text, tmp_path)
    assert problem == (
        "orchestrator.steps[0] (line 17): no service 'reviewr' in this file; "
        "services: ['publish', 'reviewer', 'secret_tools']"
    )


def test_the_orchestrator_id_is_reserved_and_agentic_needs_a_source(tmp_path: Path) -> None:
    text = VALID.replace("  publish:\n", "  orchestrator:\n", 1).replace(
        "{service: publish, input_key: text}", "orchestrator"
    )
    found = problems(text, tmp_path)
    assert found == [
        "services.orchestrator (line 12): 'orchestrator' is the id of the orchestrator "
        "service: rename this service"
    ]
    text = VALID.replace("kind: pipeline", "kind: agentic")
    found = problems(text, tmp_path)
    assert found == [
        "orchestrator.steps (line 17): only a pipeline has steps: add `kind: pipeline`",
        "orchestrator.source (line 16): an agentic orchestrator needs `source`: "
        "module:attribute of an AgenticOrchestrator (with its model)",
    ]


def test_pipeline_steps_follow_steps_listed_before_them(tmp_path: Path) -> None:
    text = VALID.replace("input_key: text}", "input_key: text, after: [publish]}")
    [problem] = problems(text, tmp_path)
    assert problem == (
        "orchestrator.steps[1] (line 17): step 'publish' follows ['publish'], which are not "
        "steps listed before it"
    )
    dag = VALID.replace(
        "steps: [reviewer, {service: publish, input_key: text}]",
        "steps: [reviewer, {service: publish, id: p1, after: []},"
        " {service: publish, id: p2, after: [reviewer, p1]}]",
    )
    d = parse_deployment(dag, tmp_path / "deployment.yaml")
    service = build_service(d, "orchestrator")
    assert isinstance(service, OrchestratorWorkflow)
    pipeline = service.orchestrator
    assert isinstance(pipeline, Pipeline)
    assert [(s.name, s.after) for s in pipeline.steps] == [
        ("reviewer", ()),
        ("p1", ()),
        ("p2", ("reviewer", "p1")),
    ]
    assert pipeline.last == ["p2"]


def test_a_file_of_workflows_loads_no_agents(tmp_path: Path) -> None:
    """Each kind imports what it runs when it is built: checking (and serving) a file of
    plain workflows leaves llama-index's agents, the orchestrators, the tool service and
    the OpenAI-compatible LLM class unimported. A fresh interpreter, so that what this
    test process imported does not count."""
    (tmp_path / "deployment.yaml").write_text(
        f"name: plain\nservices:\n  echo:\n    source: quickstart:echo\n"
        f"    path: {TESTS.parent / 'examples' / 'quickstart'}\n"
    )
    script = (
        "import sys\n"
        "from llama_mesh.launch.deployment import check_workflows, load_deployment\n"
        f"path = {str(tmp_path / 'deployment.yaml')!r}\n"
        "check_workflows(load_deployment(path), path)\n"
        "heavy = ('llama_index.core.agent', 'llama_index.llms.openai_like',\n"
        "         'llama_mesh.orchestrators', 'llama_mesh.worker.tool_service',\n"
        "         'llama_mesh.worker.mesh_tools', 'llama_mesh.worker.models')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
