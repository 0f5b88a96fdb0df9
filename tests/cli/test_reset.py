"""`llama-mesh reset` and `up --fresh`: a documented way back to no sessions, tasks or
events (issue 16, the first hour), refused while the deployment runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import cli, llama_mesh_up, quickstart, write_deployment


def _deployment(tmp_path: Path) -> Path:
    return write_deployment(tmp_path / "deployment.yaml", quickstart(tmp_path, services=["echo"]))


async def test_reset_removes_the_nats_data_and_keeps_the_keys(tmp_path: Path) -> None:
    file = _deployment(tmp_path)
    data = tmp_path / "state" / "nats"
    (data / "jetstream").mkdir(parents=True)
    (tmp_path / "state" / "auth").mkdir()
    (tmp_path / "state" / "auth" / "keys.json").write_text("{}")

    result = await cli("reset", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert result.stdout == (
        f"deployment 'quickstart': removed its sessions, tasks and events ({data})\n"
    )
    assert not data.exists()
    assert (tmp_path / "state" / "auth" / "keys.json").exists()

    again = await cli("reset", str(file))
    assert again.code == 0
    assert "nothing to remove" in again.stdout


async def test_reset_refuses_a_running_deployment_and_an_external_nats(tmp_path: Path) -> None:
    file = _deployment(tmp_path)
    data = tmp_path / "state" / "nats"
    data.mkdir(parents=True)
    # What a running `up` records: this process stands for it.
    (tmp_path / "state" / "run.json").write_text(json.dumps({"pid": os.getpid()}))
    running = await cli("reset", str(file))
    assert running.code == 2
    assert f"is running (`llama-mesh up`, pid {os.getpid()}): stop it first" in running.stderr
    assert data.exists()

    external = quickstart(tmp_path, services=["echo"])
    external["nats"] = {"url": "nats://10.0.0.1:4222"}
    other = await cli("reset", str(write_deployment(tmp_path / "cluster.yaml", external)))
    assert other.code == 2
    assert "uses the NATS servers nats://10.0.0.1:4222" in other.stderr


@pytest.mark.timeout(300)
async def test_up_fresh_starts_without_the_sessions_of_before(tmp_path: Path) -> None:
    file = _deployment(tmp_path)
    async with llama_mesh_up(file, log=tmp_path / "up1.log") as up:
        ran = await cli("run", "echo", "--session", "s1", "-q", "-f", str(file), env=up.env)
        assert ran.code == 0, ran.stderr
        assert up.summary  # and stopped on leaving
    async with llama_mesh_up(file, log=tmp_path / "up2.log") as up:
        kept = await cli("sessions", "get", "s1", "-f", str(file), env=up.env)
        assert kept.code == 0, kept.stderr  # state survives a restart ...
    async with llama_mesh_up(file, "--fresh", log=tmp_path / "up3.log") as up:
        gone = await cli("sessions", "get", "s1", "-f", str(file), env=up.env)
        assert gone.code == 3, gone.stdout  # ... and not --fresh
