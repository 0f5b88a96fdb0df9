"""The generated Go client (clients/go) runs a task, streams events and reports a
status code, through the example program clients/go/cmd/runtask."""

from __future__ import annotations

import pytest

from llama_mesh.launch.local import LocalMesh

from processes import run


@pytest.mark.timeout(110)
async def test_go_runs_a_task(go_runtask: str, mesh: LocalMesh) -> None:
    runtask = [go_runtask, "-address", mesh.address]

    task = (await run(*runtask, "-service", "echo", "-input", '{"arg1": "hello"}')).check().json()
    assert task["state"] == "TASK_STATE_SUCCEEDED"
    assert task["result"] == "hello_result"
    assert task["attemptCount"] == 1

    events = (
        (await run(*runtask, "-service", "stream", "-input", '{"n": 2}', "-stream")).check().lines()
    )
    assert [e["type"] for e in events] == ["Progress", "Progress", "StopEvent"]
    assert events[-1]["state"] == "TASK_STATE_SUCCEEDED"
    assert events[-1]["payload"] == 2

    failed = (await run(*runtask, "-service", "fail", "-input", '{"message": "no"}')).check()
    error = failed.json()["error"]
    assert error["message"] == "Boom: no"
    assert error["details"][0]["reason"] == "Boom"

    missing = await run(*runtask, "-service", "nope")
    assert missing.code == 1, missing
    assert missing.json()["code"] == "NOT_FOUND"
