"""A failed task carries its remote traceback (google.rpc.DebugInfo), size-capped, and
every way of looking at the task shows it: the Python client's exception, REST, and the
CLI (`run` on failure, `tasks get`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from google.rpc import error_details_pb2

from llama_mesh.config import ServiceConfig
from llama_mesh.core.errors import TaskFailedError
from llama_mesh.core.status import error_text
from llama_mesh.core.tracebacks import (
    INNER_FRAMES,
    MAX_DETAIL_CHARS,
    OUTER_FRAMES,
    debug_info,
    find_debug_info,
)
from llama_mesh.launch.local import LocalMesh, ServiceSpec
from llama_mesh_gateway import GatewayServer

from mesh_workflows import HelperFailingWorkflow
from processes import CLI, run

HELPER_FRAME = ", in read_missing_key"
HELPER_LINE = 'return data["missing_key"]'


@dataclass
class Mesh:
    local: LocalMesh
    http: httpx.AsyncClient

    @property
    def env(self) -> dict[str, str]:
        return {"LLAMA_MESH_CONTROL_PLANE": self.local.address}


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    services: dict[str, ServiceSpec] = {
        "lookup": HelperFailingWorkflow(),
        "quiet": (HelperFailingWorkflow(), ServiceConfig("quiet", tracebacks=False)),
    }
    async with (
        LocalMesh(services) as local,
        GatewayServer(local.address, port=0) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        yield Mesh(local, http)


async def failed_task(mesh: Mesh, service: str, **kwargs: Any) -> TaskFailedError:
    session = await mesh.local.client.create_session()
    with pytest.raises(TaskFailedError) as failed:
        await session.run(service, **kwargs)
    return failed.value


# ---------------------------------------------------------------- the Python client


async def test_the_exception_carries_the_traceback_with_the_helpers_frame(mesh: Mesh) -> None:
    err = await failed_task(mesh, "lookup")
    assert err.error_type == "KeyError"
    assert err.message.endswith("failed: KeyError: 'missing_key'")
    lines = err.traceback.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "KeyError: 'missing_key'"
    # Where the user's code raised, not where the runtime awaited it: the step's frame
    # first, then the helper's.
    assert ", in lookup" in lines[1]
    assert any(HELPER_FRAME in line for line in lines)
    assert any(HELPER_LINE in line for line in lines)
    assert not any("llama_mesh/worker" in line for line in lines)
    # str() shows it below the message, once; the text is not doubled.
    text = str(err)
    assert text.startswith(err.message + "\n")
    assert text.count("KeyError: 'missing_key'") == 2  # the message, the traceback's end
    assert "KeyError: KeyError" not in text

    info = find_debug_info(err.task.error)
    assert info is not None
    assert HELPER_FRAME in info.stack_entries[-1]
    assert HELPER_LINE in info.stack_entries[-1]


async def test_the_exception_chain_is_kept(mesh: Mesh) -> None:
    err = await failed_task(mesh, "lookup", wrap=True)
    assert err.error_type == "RuntimeError"
    assert err.message.endswith("failed: RuntimeError: the lookup failed")
    remote = err.traceback
    assert "KeyError: 'missing_key'" in remote
    assert "The above exception was the direct cause of the following exception:" in remote
    assert remote.rstrip().endswith("RuntimeError: the lookup failed")
    assert remote.index(HELPER_FRAME) < remote.index("RuntimeError: the lookup failed")


async def test_a_service_can_keep_its_tracebacks_to_itself(mesh: Mesh) -> None:
    err = await failed_task(mesh, "quiet")
    assert err.error_type == "KeyError"
    assert err.traceback == ""
    assert find_debug_info(err.task.error) is None
    assert str(err) == err.message


# ---------------------------------------------------------------- REST


async def test_rest_shows_the_debug_info(mesh: Mesh) -> None:
    session = (await mesh.http.post("/v1/sessions", json={})).json()["name"]
    resp = await mesh.http.post(
        f"/v1/{session}/tasks:run", json={"task": {"service": "lookup", "input": {}}}
    )
    assert resp.status_code == 200, resp.text
    task = resp.json()["task"] if "task" in resp.json() else resp.json()
    assert task["state"] == "TASK_STATE_FAILED"
    error = task["error"]
    assert error["message"] == "KeyError: 'missing_key'"
    [debug] = [d for d in error["details"] if d["@type"].endswith("google.rpc.DebugInfo")]
    assert HELPER_FRAME in debug["stackEntries"][-1]
    assert debug["detail"].rstrip().endswith("KeyError: 'missing_key'")

    again = await mesh.http.get(f"/v1/{task['name']}")
    assert again.status_code == 200
    assert again.json()["error"] == error


# ---------------------------------------------------------------- the CLI


async def test_the_cli_shows_the_traceback_of_a_failed_run(mesh: Mesh) -> None:
    failed = await run(str(CLI), "run", "lookup", "--quiet", env=mesh.env)
    assert failed.code == 1
    lines = failed.stderr.splitlines()
    [first] = [line for line in lines if line.startswith("error:")]
    assert first.startswith("error: task sessions/")
    assert first.endswith("failed: KeyError: 'missing_key'")
    assert "KeyError: KeyError" not in failed.stderr
    assert "The task's traceback, on its replica:" in failed.stderr
    assert HELPER_FRAME in failed.stderr
    assert HELPER_LINE in failed.stderr

    as_json = await run(str(CLI), "run", "lookup", "--quiet", "-o", "json", env=mesh.env)
    assert as_json.code == 1
    error = as_json.json()["error"]
    assert error["type"] == "KeyError"
    assert HELPER_FRAME in error["traceback"]
    task = error["task"]

    shown = await run(str(CLI), "tasks", "get", task, env=mesh.env)
    assert shown.code == 0, shown.stderr
    assert '"state": "FAILED"' in shown.stdout
    after = shown.stdout.split("The task's traceback, on its replica:\n", 1)[1]
    assert HELPER_FRAME in after
    assert after.rstrip().endswith("KeyError: 'missing_key'")

    view = (await run(str(CLI), "tasks", "get", task, "-o", "json", env=mesh.env)).json()
    assert view["error"]["message"] == "KeyError: 'missing_key'"
    assert HELPER_FRAME in view["error"]["traceback"]


# ---------------------------------------------------------------- sizes and text


def _recurse(depth: int) -> None:
    if depth == 0:
        raise ValueError("x" * (2 * MAX_DETAIL_CHARS))
    _recurse(depth - 1)


def test_a_deep_stack_and_a_huge_message_are_capped() -> None:
    try:
        _recurse(500)
    except ValueError as err:
        info = debug_info(err)
    assert len(info.stack_entries) == OUTER_FRAMES + 1 + INNER_FRAMES
    left_out = info.stack_entries[OUTER_FRAMES]
    assert left_out.startswith("[") and left_out.endswith(" frames left out]")
    # The innermost frames are kept: the one that raised is last.
    assert "raise ValueError" in info.stack_entries[-1]
    assert len(info.detail) <= MAX_DETAIL_CHARS
    assert info.detail.startswith("…")
    assert info.detail.rstrip().endswith("x" * 100)
    assert isinstance(info, error_details_pb2.DebugInfo)


def test_error_text_never_doubles_the_type() -> None:
    assert error_text("KeyError", "'k'") == "KeyError: 'k'"
    assert error_text("ValueError", "ValueError: bad") == "ValueError: bad"
    assert error_text("ValueError", "") == "ValueError"
