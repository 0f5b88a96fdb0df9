"""An agent deployed with `up` (secured, NATS locked down): `llama-mesh run` shows its
answer as the model writes it, its tool call and tokens; `sessions get` its usage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llama_mesh.testing import Reply, ScriptedModel, ToolCall, Usage

from .conftest import ROOT, cli, llama_mesh_up, write_deployment


@pytest.mark.timeout(180)
async def test_run_shows_an_agents_tokens_and_tool_calls_live(tmp_path: Path) -> None:
    model = ScriptedModel().script(
        Reply(tool_calls=[ToolCall("add", {"a": 2, "b": 3})], usage=Usage(30, 6)),
        Reply("2 + 3 = 5", usage=Usage(45, 4)),
    )
    async with model.serve() as model_url:
        file = write_deployment(
            tmp_path / "deployment.yaml",
            {
                "name": "agents",
                "state_dir": str(tmp_path / "state"),
                "control_plane": {"port": 0},
                "gateway": {"enabled": False},
                "services": {
                    "assistant": {
                        "source": "mesh_agents:assistant",
                        "path": str(ROOT / "tests"),
                        "env": {"SCRIPTED_MODEL_URL": model_url},
                    }
                },
            },
        )
        async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
            ran = await cli(
                "run",
                "assistant",
                "--session",
                "budgeted",
                "--arg",
                "user_msg=2 + 3?",
                "-c",
                up.control_plane,
                env=up.env,
            )
            shown = await cli("sessions", "get", "budgeted", "-c", up.control_plane, env=up.env)
            as_json = await cli(
                "sessions", "get", "budgeted", "-c", up.control_plane, "-o", "json", env=up.env
            )
    assert ran.code == 0, ran.stderr
    assert json.loads(ran.stdout)["response"] == "2 + 3 = 5"
    lines = ran.stderr.splitlines()
    assert lines[:5] == [
        "· 36 tokens",
        '→ add {"a": 2, "b": 3}',
        "← add: 5",
        "2 + 3 = 5",
        "· 49 tokens",
    ]
    # The last event, as for any task, then the task's tokens.
    assert " StopEvent SUCCEEDED " in lines[5]
    assert lines[6:] == ["tokens: 85 (75 prompt, 10 completion) in 2 LLM calls"]
    assert shown.code == 0, shown.stderr
    assert "tokens: 85 (75 prompt, 10 completion) in 2 LLM calls" in shown.stdout
    usage = as_json.json()["usage"]
    assert (usage["total_tokens"], usage["models"]["scripted"]["llm_calls"]) == (85, 2)
