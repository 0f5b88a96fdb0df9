"""`llama-mesh up --watch`: a saved workflow file restarts that service's replicas (only
theirs), a task in flight finishes, a syntax error leaves the old replica serving and
says where it is, and a saved deployment file restarts the services whose section
changed (or says `up` must start again)."""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from llama_mesh.client import AsyncClient, Credentials

from .conftest import alive, free_port, llama_mesh_up, write_deployment

ANSWER = """
import asyncio
from pathlib import Path

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent

VERSION = {version!r}


def _hold(folder: str) -> None:
    # Says it runs (the test's open of `running` returns), then waits to be released.
    Path(folder, "running").write_text("")
    Path(folder, "release").read_text()


class Answer(Workflow):
    @step
    async def answer(self, ev: StartEvent) -> StopEvent:
        if ev.get("hold"):
            await asyncio.to_thread(_hold, ev.get("hold"))
        return StopEvent(result=VERSION)


answer = Answer(timeout=120)
"""

OTHER = """
import os

from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent


class Other(Workflow):
    @step
    async def other(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=os.environ.get("GREETING", ""))


other = Other()
"""


def _write(path: Path, text: str) -> None:
    """Save as editors do: the new content whole, at once (no empty file between)."""
    saving = path.with_name(path.name + ".saving")
    saving.write_text(textwrap.dedent(text), encoding="utf-8")
    saving.replace(path)


def _save_deployment(path: Path, data: dict[str, object]) -> None:
    _write(path, yaml.safe_dump(data, sort_keys=False))


def _deployment(tmp_path: Path, greeting: str = "hello") -> dict[str, object]:
    return {
        "name": "watched",
        "state_dir": str(tmp_path / "state"),
        "control_plane": {"port": 0},
        "gateway": {"enabled": False},
        "services": {
            "answer": {"source": "answer:answer"},
            "other": {"source": "other:other", "env": {"GREETING": greeting}},
        },
    }


async def _held(folder: Path) -> None:
    """Until a task holding in `folder` runs (it writes `running` into a FIFO)."""
    await asyncio.to_thread((folder / "running").read_text)


@pytest.mark.timeout(300)
async def test_up_watch_restarts_what_changed_and_loses_nothing(tmp_path: Path) -> None:
    _write(tmp_path / "answer.py", ANSWER.format(version="v1"))
    _write(tmp_path / "other.py", OTHER)
    file = write_deployment(tmp_path / "deployment.yaml", _deployment(tmp_path))
    hold = tmp_path / "hold"
    hold.mkdir()
    os.mkfifo(hold / "running")
    os.mkfifo(hold / "release")
    async with llama_mesh_up(file, "--watch", log=tmp_path / "up.log") as up:
        assert str(tmp_path) in up.summary["watching"]
        first = up.summary["pids"]["answer/1"]
        [first_replica] = up.summary["services"]["answer"]
        other = up.summary["pids"]["other/1"]
        credentials = Credentials.from_env(up.env)
        async with AsyncClient(up.control_plane, credentials=credentials) as client:

            async def run(service: str) -> object:
                # A session each: runs of one service in one session take turns.
                return await (await client.create_session()).run(service)

            assert await run("answer") == "v1"
            in_flight = await (await client.create_session()).create_task("answer", hold=str(hold))
            await _held(hold)  # it runs on the replica about to be replaced

            _write(tmp_path / "answer.py", ANSWER.format(version="v2"))
            reloaded = await up.next_event("reloaded")
            assert (reloaded["child"], reloaded["old_pid"]) == ("answer/1", first)
            assert reloaded["file"] == [str(tmp_path / "answer.py")]
            assert reloaded["pid"] != first
            # The old replica drains: the task it runs finishes (none lost).
            await asyncio.to_thread((hold / "release").write_text, "go")
            assert await in_flight.result() == "v1"
            assert await run("answer") == "v2"
            assert alive(other)  # its file did not change

            # A syntax error: the old replica keeps serving; the error says where.
            _write(tmp_path / "answer.py", "VERSION = 'v3'\ndef broken(:\n")
            failed = await up.next_event("reload_failed")
            assert failed["child"] == "answer/1"
            assert "the old process still serves" in failed["message"]
            log = await asyncio.to_thread((tmp_path / "up.log").read_text)
            where = f"cannot import module 'answer': {tmp_path / 'answer.py'}:2: invalid syntax"
            assert where in log, log[-2000:]
            assert "Traceback" not in log
            assert await run("answer") == "v2"
            # Fixed and saved: it restarts.
            _write(tmp_path / "answer.py", ANSWER.format(version="v3"))
            fixed = await up.next_event("reloaded")
            assert fixed["child"] == "answer/1" and fixed["old_pid"] == reloaded["pid"]
            assert await run("answer") == "v3"

            # The deployment file: the service whose section changed restarts with it.
            assert await run("other") == "hello"
            _save_deployment(file, _deployment(tmp_path, greeting="bonjour"))
            changed = await up.next_event("reloaded")
            assert (changed["child"], changed["old_pid"]) == ("other/1", other)
            assert changed["file"] == [str(file)]
            assert await run("other") == "bonjour"
            # What only a new `up` applies is named, and nothing restarts.
            data = _deployment(tmp_path, greeting="bonjour")
            data["services"]["answer"]["replicas"] = 2  # type: ignore[index]
            _save_deployment(file, data)
            needed = await up.next_event("restart_needed")
            assert needed["fields"] == ["services.answer.replicas"]
            assert "stop `up` and start it again" in needed["message"]
        assert await up.stop() == 0
    assert not alive(first)
    # Paused before the restart was announced: no task after it ran the old code.
    kept = (tmp_path / "state" / "logs" / "up.jsonl").read_text()
    assert f"service answer: replica {first_replica['replica_id']} paused" in kept


@pytest.mark.timeout(240)
async def test_a_replica_on_a_fixed_port_stops_first_and_restarts_once_fixed(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "answer.py", ANSWER.format(version="v1"))
    port = free_port()
    data = _deployment(tmp_path)
    data["services"] = {"answer": {"source": "answer:answer", "port": port}}
    file = write_deployment(tmp_path / "deployment.yaml", data)
    async with llama_mesh_up(file, "--watch", log=tmp_path / "up.log") as up:
        first = up.summary["pids"]["answer/1"]
        credentials = Credentials.from_env(up.env)
        async with AsyncClient(up.control_plane, credentials=credentials) as client:

            async def run() -> object:
                return await (await client.create_session()).run("answer", timeout=60)

            assert await run() == "v1"
            # Two processes cannot bind one port: the old one stops, then the new starts.
            _write(tmp_path / "answer.py", ANSWER.format(version="v2"))
            reloaded = await up.next_event("reloaded")
            assert (reloaded["old_pid"], reloaded["child"]) == (first, "answer/1")
            assert not alive(first)
            assert up.summary["services"]["answer"][0]["address"].endswith(f":{port}")
            assert await run() == "v2"

            _write(tmp_path / "answer.py", "def broken(:\n")
            failed = await up.next_event("reload_failed")
            assert "it is stopped until answer.py is fixed and saved" in failed["message"]
            assert not alive(reloaded["pid"])
            _write(tmp_path / "answer.py", ANSWER.format(version="v3"))
            fixed = await up.next_event("reloaded")
            assert fixed["old_pid"] == reloaded["pid"]
            assert await run() == "v3"
        assert await up.stop() == 0
