"""The agent examples' deployment files, run with `llama-mesh up`, driven by the CLI as
docs/agents.md shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_mesh.client import AsyncClient, Credentials, TaskHandle
from llama_mesh.testing import RecordedRequest, Reply, ScriptedModel, ToolCall
from llama_mesh.v1 import resources_pb2

from .conftest import ROOT, cli, llama_mesh_up, write_deployment

HUMAN_PIPELINE = ROOT / "examples" / "agents" / "human_pipeline"
TOOL_SERVICE = ROOT / "examples" / "agents" / "tool_service"
SECRET_FACT = "The secret fact is: A baby llama is called a 'Cria'."


def on_free_ports(example: Path, tmp_path: Path) -> dict[str, Any]:
    """An example's deployment file, on free ports, with its state under tmp_path."""
    data: dict[str, Any] = yaml.safe_load((example / "deployment.yaml").read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["control_plane"]["port"] = 0
    data["gateway"]["port"] = 0
    for service in data["services"].values():
        service["path"] = str((example / service.get("path", ".")).resolve())
    return data


async def until_a_child_waits(client: AsyncClient, parent: TaskHandle) -> None:
    async for event in parent.events():
        if event.type == "llama_mesh.ChildTaskCreated" and event.payload["service"] == "reviewer":
            async for child_event in client.task(event.payload["task"]).events():
                if child_event.state == "WAITING_FOR_INPUT":
                    return
    raise AssertionError(f"{parent.name} finished before its review")


@pytest.mark.timeout(300)  # `up` of four services, each importing llama-index
async def test_the_human_pipeline_waits_for_the_reviewer_then_publishes(tmp_path: Path) -> None:
    file = write_deployment(tmp_path / "deployment.yaml", on_free_ports(HUMAN_PIPELINE, tmp_path))
    async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
        assert set(up.summary["services"]) == {"draft", "reviewer", "publish", "orchestrator"}
        target = ("-c", up.control_plane)

        asked = await cli("ask", "llamas", "--no-wait", "-o", "json", *target, env=up.env)
        assert asked.code == 0, asked.stderr
        task = asked.json()["task"]

        # The pipeline drafts, then waits for the reviewer: the inbox shows the draft.
        async with AsyncClient(up.control_plane, credentials=Credentials(token=up.token)) as client:
            await until_a_child_waits(client, client.task(task))
        inbox = await cli("inbox", "-o", "json", *target, env=up.env)
        [waiting] = inbox.json()
        assert waiting["service"] == "reviewer"
        assert waiting["parent_task"] == task
        assert waiting["prompt"] == (
            "Please review this draft and reply with the text to publish:\n\n"
            "A first draft about llamas."
        )
        text_inbox = await cli("inbox", *target, env=up.env)
        assert text_inbox.stdout.splitlines()[1:] == [
            "  Please review this draft and reply with the text to publish:",
            "",
            "  A first draft about llamas.",
        ]

        review = "Llamas hum when they are content."
        answered = await cli("answer", waiting["task"], review, *target, env=up.env)
        assert answered.code == 0, answered.stderr
        # The state when the call returns: the answer is stored first, and the reviewer's
        # task may finish before its record has changed, so RUNNING or already SUCCEEDED.
        assert answered.stdout in {
            f"{waiting['task']}: answered; now {state}\n" for state in ("RUNNING", "SUCCEEDED")
        }, answered.stdout

        events = await cli("tasks", "events", task, "--follow", "-o", "json", *target, env=up.env)
        assert events.code == 0, events.stderr
        last = json.loads(events.stdout.splitlines()[-1])
        assert last["state"] == "SUCCEEDED"
        assert last["payload"] == {"published": review, "words": 6}
        assert (await cli("inbox", *target, env=up.env)).stdout == "nothing waits for an answer\n"


def secret_fact_model(request: RecordedRequest) -> Reply:
    """The agent's model: call the tool, then answer with what it returned."""
    last = request.messages[-1]
    if last["role"] == "tool":
        return Reply(str(last["content"]))
    return Reply(tool_calls=[ToolCall("get_the_secret_fact", {})])


@pytest.mark.timeout(300)  # `up` of two services, each importing llama-index
async def test_an_agent_uses_the_tools_of_a_tool_service_in_another_process(
    tmp_path: Path,
) -> None:
    file = write_deployment(tmp_path / "deployment.yaml", on_free_ports(TOOL_SERVICE, tmp_path))
    model = ScriptedModel().respond_with(secret_fact_model)
    async with model.serve() as url:
        env = {"OPENAI_BASE_URL": url, "LLAMA_MESH_MODEL": "scripted"}
        async with llama_mesh_up(file, log=tmp_path / "up.log", env=env) as up:
            ran = await cli(
                "run",
                "secret_fact_agent",
                "--arg",
                "user_msg=What is the secret fact?",
                "-o",
                "json",
                "-c",
                up.control_plane,
                env=up.env,
            )
            assert ran.code == 0, ran.stderr
            assert SECRET_FACT in json.dumps(ran.json()["result"])
            async with AsyncClient(
                up.control_plane, credentials=Credentials(token=up.token)
            ) as client:
                [tool_call] = await client.list_tasks(service="secret_tools")
            assert tool_call.parent_task == ran.json()["name"]
            assert tool_call.state == resources_pb2.TASK_STATE_SUCCEEDED
    offered = [t["function"]["name"] for t in model.requests[0].body["tools"]]
    assert offered == ["get_the_secret_fact", "add"]
    last = model.requests[1].messages[-1]
    assert (last["role"], last["content"]) == ("tool", SECRET_FACT)
