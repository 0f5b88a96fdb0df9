"""`up` of a file with `models:` runs the built-in agent service on them: agents the
Agents API creates and the Responses API's responses answer through the gateway, with
llama-stack-client and the openai SDK, on the scripted model."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_stack_client import AsyncLlamaStackClient
from openai import AsyncOpenAI

from llama_mesh.launch.deployment import DeploymentError, parse_deployment
from llama_mesh.testing import RecordedRequest, Reply, ScriptedModel

from .conftest import cli, llama_mesh_up, write_deployment


def echo(request: RecordedRequest) -> Reply:
    users = [m for m in request.messages if m.get("role") == "user"]
    return Reply(f"ECHO: {users[-1]['content']}")


def with_models(tmp_path: Path, model_url: str) -> Path:
    return write_deployment(
        tmp_path / "deployment.yaml",
        {
            "name": "agents-api",
            "state_dir": str(tmp_path / "state"),
            "control_plane": {"port": 0},
            "gateway": {"port": 0},
            "models": {"scripted": {"base_url": model_url, "max_retries": 0}},
        },
    )


@pytest.mark.timeout(300)  # `up` of a service that imports llama-index's agents
async def test_up_with_models_serves_the_agents_and_responses_apis(tmp_path: Path) -> None:
    model = ScriptedModel()
    model.respond_with(echo)
    async with model.serve() as model_url:
        file = with_models(tmp_path, model_url)
        checked = await cli("check", str(file))
        assert checked.code == 0, checked.stderr
        async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
            # One more service than the file lists: the built-in agent service.
            assert list(up.summary["services"]) == ["agents"]
            gateway = str(up.summary["gateway"])
            async with AsyncLlamaStackClient(base_url=gateway, api_key=up.token) as llama:
                agent = await llama.agents.create(
                    agent_config={"model": "scripted", "instructions": "Be terse."}
                )
                session = await llama.agents.session.create(agent.agent_id, session_name="s")
                turn = await llama.agents.turn.create(
                    agent_id=agent.agent_id,
                    session_id=session.session_id,
                    messages=[{"role": "user", "content": "hello"}],
                    stream=False,
                )
            assert turn.output_message.content == "ECHO: hello"
            async with AsyncOpenAI(base_url=f"{gateway}/v1/openai/v1", api_key=up.token) as openai:
                response = await openai.responses.create(model="scripted", input="again")
            assert response.output_text == "ECHO: again"
    # The model the deployment file names is the one that was asked.
    assert [r.body["model"] for r in model.requests] == ["scripted", "scripted"]
    assert model.requests[0].messages[0] == {"role": "system", "content": "Be terse."}


def test_the_built_in_agent_services_id_is_reserved_when_the_file_has_models(
    tmp_path: Path,
) -> None:
    text = (
        "name: x\nmodels:\n  m: {base_url: 'http://127.0.0.1:1/v1'}\n"
        "services:\n  agents: {kind: human}\n"
    )
    with pytest.raises(DeploymentError) as caught:
        parse_deployment(text, tmp_path / "deployment.yaml")
    assert caught.value.problems == [
        "services.agents (line 5): 'agents' is the id of the built-in agent service, which "
        "`up` runs when the file has models: rename this service"
    ]
    # Without models: no built-in agent service, and the id is free.
    free = parse_deployment("name: x\nservices:\n  agents: {kind: human}\n", tmp_path / "d.yaml")
    assert free.service_ids() == ["agents"] and not free.runs_agents_service
