"""The generated TypeScript client (clients/typescript) from Node: run a task, stream its
events, and catch typed errors, through clients/typescript/src/cli.ts."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_mesh.launch.local import LocalMesh

from processes import run


@pytest.mark.timeout(90)
async def test_node_runs_a_task_streams_events_and_catches_typed_errors(
    node: str, ts_client: Path, mesh: LocalMesh
) -> None:
    cli = [node, str(ts_client / "cli.js"), mesh.address]

    task = (await run(*cli, "run", "echo", '{"arg1": "hello"}')).check().json()
    assert task["state"] == "TASK_STATE_SUCCEEDED"
    assert task["result"] == "hello_result"
    assert task["input"] == {"arg1": "hello"}
    assert task["name"].startswith("sessions/")

    result = (await run(*cli, "result", "echo", '{"arg1": 42}')).check().json()
    assert result == "42_result"

    events = (await run(*cli, "stream", "stream", '{"n": 3}')).check().lines()
    assert [e["type"] for e in events] == ["Progress", "Progress", "Progress", "StopEvent"]
    assert [e["payload"] for e in events] == [{"n": 0}, {"n": 1}, {"n": 2}, 3]
    assert [e["final"] for e in events] == [False, False, False, True]
    assert events[-1]["state"] == "SUCCEEDED"
    assert [e["sequence"] for e in events] == sorted(e["sequence"] for e in events)

    # A call the control plane refuses: the wrapper throws NotFoundError.
    missing = await run(*cli, "result", "nope", "{}")
    assert missing.code == 1, missing
    error = missing.json()
    assert error["error"] == "NotFoundError"
    assert error["code"] == "NOT_FOUND"
    assert "'nope' is not registered" in error["message"]

    # A task that fails: TaskFailedError with the Python exception's type.
    failed = await run(*cli, "result", "fail", '{"message": "bad input"}')
    assert failed.code == 1, failed
    error = failed.json()
    assert error["error"] == "TaskFailedError"
    assert error["errorType"] == "Boom"
    assert "Boom: bad input" in error["message"]

    # The failed Task as protobuf JSON, with its ErrorInfo detail.
    task = (await run(*cli, "run", "fail", '{"message": "bad input"}')).check().json()
    assert task["state"] == "TASK_STATE_FAILED"
    assert task["error"]["code"] == 2
    error_info, debug_info = task["error"]["details"]
    assert error_info == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "Boom",
        "domain": "llama-mesh",
    }
    # The workflow's traceback, as protobuf JSON writes a google.rpc.DebugInfo.
    assert debug_info["@type"] == "type.googleapis.com/google.rpc.DebugInfo"
    assert any(", in fail" in entry for entry in debug_info["stackEntries"])
    assert debug_info["detail"].endswith("Boom: bad input\n")
