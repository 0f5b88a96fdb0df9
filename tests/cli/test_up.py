"""`llama-mesh up` on the quickstart: ready, the same task through the CLI, REST and
grpcurl, then SIGTERM stops every process it started."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx

from .conftest import alive, cli, llama_mesh_up, quickstart, write_deployment

GRPCURL = Path(sys.executable).parent / "grpcurl"


async def grpcurl(
    address: str, method: str, request: dict[str, object], token: str
) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-plaintext",
        "-H",
        f"authorization: Bearer {token}",
        "-d",
        json.dumps(request),
        address,
        f"llama_mesh.v1.ControlPlaneAPI/{method}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    response: dict[str, object] = json.loads(stdout)
    return response


async def test_quickstart_up_serves_cli_rest_and_grpcurl_then_sigterm_stops_all(
    tmp_path: Path,
) -> None:
    file = write_deployment(tmp_path / "deployment.yaml", quickstart(tmp_path))
    async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
        summary = up.summary
        assert set(summary["services"]) == {"echo", "counter", "approval", "inner", "outer"}
        assert len(summary["services"]["echo"]) == 2
        assert (tmp_path / "state" / "run.json").exists()

        # The CLI, finding the control plane through the deployment file's run file.
        ran = await cli("run", "echo", "--arg", "arg1=hello", "-o", "json", "-f", str(file))
        assert ran.code == 0, ran.stderr
        by_cli = ran.json()
        assert by_cli["state"] == "SUCCEEDED"

        # REST through the gateway.
        async with httpx.AsyncClient(base_url=summary["gateway"], timeout=30) as anonymous:
            # Secure by default: no token, no call (the gateway adds no credentials).
            refused = await anonymous.post("/v1/sessions", json={})
            assert refused.status_code == 401, refused.text
        auth = {"authorization": f"Bearer {up.token}"}
        async with httpx.AsyncClient(base_url=summary["gateway"], timeout=30, headers=auth) as http:
            session = (await http.post("/v1/sessions", json={})).json()
            response = await http.post(
                f"/v1/{session['name']}/tasks:run",
                json={"task": {"service": "echo", "input": {"arg1": "hello"}}},
            )
            assert response.status_code == 200, response.text
            by_rest = response.json()
            assert (await http.get("/healthz")).json()["upstreamStatus"] == "SERVING"
            # The console's address, as `up` prints it, serves the page.
            assert summary["console"] == f"{summary['gateway']}/console/"
            page = await http.get(summary["console"])
            assert page.status_code == 200, page.text
            assert page.headers["content-type"].startswith("text/html")

        # grpcurl through server reflection.
        created = await grpcurl(up.control_plane, "CreateSession", {"session": {}}, up.token)
        session_name = created["session"]["name"]  # type: ignore[index]
        by_grpcurl = await grpcurl(
            up.control_plane,
            "RunTask",
            {"parent": session_name, "task": {"service": "echo", "input": {"arg1": "hello"}}},
            up.token,
        )

        assert by_cli["result"] == by_rest["result"] == by_grpcurl["task"]["result"]  # type: ignore[index]
        assert by_cli["result"] == "hello_result"

        # The README's nested pair: outer awaits inner, a child task on its own service.
        nested = await cli(
            "run", "outer", "--arg", "arg1=hello", "-c", up.control_plane, env=up.env
        )
        assert nested.code == 0, nested.stderr
        assert json.loads(nested.stdout) == "hello_result_result"
        assert "ChildTaskCreated" in nested.stderr

        pids = up.pids
        assert all(alive(pid) for pid in pids)
        assert await up.stop() == 0
    assert not [pid for pid in pids if alive(pid)]
    assert not (tmp_path / "state" / "run.json").exists()
    # At the default log level the children print nothing (uvicorn's INFO lines were).
    assert "INFO" not in (tmp_path / "up.log").read_text()


async def test_a_dead_replica_is_reported_and_restarted(tmp_path: Path) -> None:
    data = quickstart(tmp_path, services=["echo"])
    data["gateway"]["enabled"] = False
    file = write_deployment(tmp_path / "deployment.yaml", data)
    async with llama_mesh_up(file, "--max-restarts", "1", log=tmp_path / "up.log") as up:
        first = up.summary["pids"]["echo/1"]
        [dead] = [r["replica_id"] for r in up.summary["services"]["echo"] if r["pid"] == first]
        os.kill(first, signal.SIGKILL)
        exited = await up.next_event("exited")
        assert exited["child"] == "echo/1"
        assert exited["code"] == -signal.SIGKILL
        restarted = await up.next_event("restarted")
        assert restarted["child"] == "echo/1" and restarted["pid"] != first
        # The dead replica left the registry when up saw it die, not when its lease ran out.
        shown = await cli("status", "-o", "json", "-c", up.control_plane, env=up.env)
        [echo] = [s for s in shown.json()["services"] if s["name"] == "echo"]
        replicas = [r["replica_id"] for r in echo["replicas"]]
        assert dead not in replicas and len(replicas) == len(up.summary["services"]["echo"])
        ran = await cli("run", "echo", "--arg", "arg1=again", "-c", up.control_plane, env=up.env)
        assert ran.code == 0, ran.stderr
        assert json.loads(ran.stdout) == "again_result"

        os.kill(restarted["pid"], signal.SIGKILL)
        gave_up = await up.next_event("gave_up")
        assert gave_up["child"] == "echo/1"
        pids = [*up.pids, restarted["pid"]]
        assert await up.stop() == 0
    assert not [pid for pid in pids if alive(pid)]


async def test_children_exit_when_up_is_killed(tmp_path: Path) -> None:
    data = quickstart(tmp_path, services=["echo"])
    data["gateway"]["enabled"] = False
    file = write_deployment(tmp_path / "deployment.yaml", data)
    async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
        children = [int(p) for p in up.summary["pids"].values()]
        up.process.kill()  # no chance to stop them in order
        await up.process.wait()
        # Each child watches the pipe `up` holds on its stdin and exits once it closes.
        async with asyncio.timeout(60):
            await asyncio.gather(*(_exited(pid) for pid in children))


async def _exited(pid: int) -> None:
    """Wait for a process that is not our child to go (pidfd: no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone = asyncio.Event()
    loop.add_reader(fd, gone.set)
    try:
        await gone.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)
