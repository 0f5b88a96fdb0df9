"""The same task through Python, REST, grpcurl, buf curl, TypeScript and Go gives the
same JSON: the contract is the proto, not any one language's client."""

from __future__ import annotations

import json
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format

from llama_mesh.launch.local import LocalMesh
from llama_mesh.v1 import control_plane_pb2, resources_pb2

from processes import run

Leg = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
CP = "llama_mesh.v1.ControlPlaneAPI"


def essence(task: dict[str, Any]) -> dict[str, Any]:
    """What must not differ between languages: state, result, and a failure's status."""
    out = {k: task.get(k) for k in ("service", "input", "state", "result")}
    if "error" in task:
        error = task["error"]
        out["error"] = {
            "code": error["code"],
            "message": error["message"],
            # ErrorInfo in full; the DebugInfo (the traceback: paths differ) by its type.
            "details": [
                {"@type": d["@type"], "reason": d["reason"], "domain": d["domain"]}
                if d["@type"].endswith("/google.rpc.ErrorInfo")
                else {"@type": d["@type"]}
                for d in error.get("details", [])
            ],
        }
    return out


def legs(mesh: LocalMesh, grpcurl: str, buf: str, node: str, ts: Path, go: str) -> dict[str, Leg]:
    address = mesh.address

    async def python(service: str, args: dict[str, Any]) -> dict[str, Any]:
        session = await mesh.client.create_session()
        task = resources_pb2.Task(service=service)
        task.input.update(args)
        response = await mesh.client.stub.RunTask(
            control_plane_pb2.RunTaskRequest(parent=session.name, task=task), timeout=30
        )
        found: dict[str, Any] = json_format.MessageToDict(response.task)
        return found

    async def grpc_cli(service: str, args: dict[str, Any]) -> dict[str, Any]:
        session = (
            (await run(grpcurl, "-plaintext", "-d", "{}", address, f"{CP}/CreateSession"))
            .check()
            .json()["session"]["name"]
        )
        request = {"parent": session, "task": {"service": service, "input": args}}
        ran = await run(grpcurl, "-plaintext", "-d", json.dumps(request), address, f"{CP}/RunTask")
        task: dict[str, Any] = ran.check().json()["task"]
        return task

    async def buf_curl(service: str, args: dict[str, Any]) -> dict[str, Any]:
        curl = [buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d"]
        base = f"http://{address}/{CP}"
        session = (await run(*curl, "{}", f"{base}/CreateSession")).check().json()
        request = {
            "parent": session["session"]["name"],
            "task": {"service": service, "input": args},
        }
        task: dict[str, Any] = (
            (await run(*curl, json.dumps(request), f"{base}/RunTask")).check().json()["task"]
        )
        return task

    async def typescript(service: str, args: dict[str, Any]) -> dict[str, Any]:
        done = await run(node, str(ts / "cli.js"), address, "run", service, json.dumps(args))
        task: dict[str, Any] = done.check().json()
        return task

    async def golang(service: str, args: dict[str, Any]) -> dict[str, Any]:
        done = await run(go, "-address", address, "-service", service, "-input", json.dumps(args))
        task: dict[str, Any] = done.check().json()
        return task

    return {
        "python": python,
        "grpcurl": grpc_cli,
        "buf curl": buf_curl,
        "typescript": typescript,
        "go": golang,
    }


async def through_rest(
    mesh: LocalMesh, cases: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]] | None:
    """The cases through the REST gateway, or None (with a warning) if it cannot run."""
    try:
        from llama_mesh_gateway import GatewayServer
    except ImportError as err:
        warnings.warn(f"REST leg skipped: the gateway does not import: {err}", stacklevel=1)
        return None
    tasks = []
    async with (
        GatewayServer(mesh.address, port=0) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        for service, args in cases:
            created = await http.post("/v1/sessions", json={})
            if created.status_code != 200:
                warnings.warn(f"REST leg skipped: POST /v1/sessions: {created.text}", stacklevel=1)
                return None
            session = created.json()["name"]
            ran = await http.post(
                f"/v1/{session}/tasks:run", json={"task": {"service": service, "input": args}}
            )
            assert ran.status_code == 200, ran.text
            tasks.append(ran.json())
    return tasks


@pytest.mark.timeout(110)
async def test_same_task_same_json_in_every_language(
    mesh: LocalMesh,
    grpcurl: str,
    buf: str,
    node: str,
    ts_client: Path,
    go_runtask: str,
) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("echo", {"arg1": "hello"}),
        ("stream", {"n": 2}),
        ("fail", {"message": "same everywhere"}),
    ]
    expected = [
        {
            "service": "echo",
            "input": {"arg1": "hello"},
            "state": "TASK_STATE_SUCCEEDED",
            "result": "hello_result",
        },
        {"service": "stream", "input": {"n": 2}, "state": "TASK_STATE_SUCCEEDED", "result": 2},
        {
            "service": "fail",
            "input": {"message": "same everywhere"},
            "state": "TASK_STATE_FAILED",
            "result": None,
            "error": {
                "code": 2,
                "message": "Boom: same everywhere",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "Boom",
                        "domain": "llama-mesh",
                    },
                    {"@type": "type.googleapis.com/google.rpc.DebugInfo"},
                ],
            },
        },
    ]
    seen: dict[str, list[dict[str, Any]]] = {}
    for language, leg in legs(mesh, grpcurl, buf, node, ts_client, go_runtask).items():
        seen[language] = [essence(await leg(service, args)) for service, args in cases]
    rest = await through_rest(mesh, cases)
    if rest is not None:
        seen["rest"] = [essence(task) for task in rest]
    for language, tasks in seen.items():
        assert tasks == expected, f"{language} differs"
