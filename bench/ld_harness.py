"""llama_deploy 0.8.1 in its own virtualenv: install, deploy, measure, stop.

The venv is bench/.venvs/llama_deploy (never a dependency of the project). The core
(deploy_core with a SimpleMessageQueue) and each workflow service (deploy_workflow) run
in their own processes of that venv, as the llama_deploy README deploys them; the client
legs run in one more process of that venv (bench/ld/client.py).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import floor
import httpx
from config import BenchConfig
from procs import Proc, Procs, free_port, idle, wait_until

BENCH = Path(__file__).resolve().parent
LD = BENCH / "ld"
VENV = BENCH / ".venvs" / "llama_deploy"
PY = VENV / "bin" / "python"
VERSION = "0.8.1"
NAMESPACE = "llama_deploy"  # ControlPlaneConfig.topic_namespace's default


def ensure_venv() -> dict[str, Any]:
    """Create the venv and install llama-deploy==0.8.1 unless it is there already."""
    probe = [str(PY), "-c", "import importlib.metadata as m; print(m.version('llama-deploy'))"]
    if PY.exists():
        found = subprocess.run(probe, capture_output=True, text=True, timeout=60)
        if found.returncode == 0 and found.stdout.strip() == VERSION:
            return {"installed": "already"}
    started = time.perf_counter()
    print(f"   installing llama-deploy=={VERSION} into {VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
    subprocess.run(
        [str(PY), "-m", "pip", "install", "-q", f"llama-deploy=={VERSION}"],
        check=True,
        timeout=900,
    )
    return {"installed": "now", "install_s": round(time.perf_counter() - started, 1)}


async def _topic_exists(http: httpx.AsyncClient, queue_url: str, topic: str) -> bool:
    # GET /messages/{topic} answers 404 until a consumer registered the topic. It pops a
    # message if there is one, and there is none before the first task is sent.
    response = await http.get(f"{queue_url}/messages/{topic}")
    return response.status_code == 200


async def _service_ready(http: httpx.AsyncClient, cp_url: str, queue_url: str, name: str) -> bool:
    services = (await http.get(f"{cp_url}/services")).json()
    return name in services and await _topic_exists(http, queue_url, f"{NAMESPACE}.{name}")


class LlamaDeployBench:
    def __init__(self, config: BenchConfig, procs: Procs) -> None:
        self.config = config
        self.procs = procs
        self.cp_port = free_port()
        self.queue_port = free_port()
        self.cp_url = f"http://127.0.0.1:{self.cp_port}"
        self.queue_url = f"http://127.0.0.1:{self.queue_port}"
        self.env = {
            "PYTHONPATH": str(LD),
            # NetworkWorkflow's client (nested calls) reads where the control plane is.
            "LLAMA_DEPLOY_CONTROL_PLANE_URL": self.cp_url,
        }

    async def start_core(self, http: httpx.AsyncClient) -> Proc:
        argv = [
            str(PY),
            str(LD / "core.py"),
            "--control-plane-port",
            str(self.cp_port),
            "--queue-port",
            str(self.queue_port),
        ]
        started = time.perf_counter()
        proc = await self.procs.start("core", argv, env=self.env, ready_line=False)

        # llama_deploy prints no ready line: poll its HTTP endpoints (20 ms interval).
        async def ready() -> bool:
            home = await http.get(f"{self.cp_url}/")
            return home.status_code == 200 and await _topic_exists(
                http, self.queue_url, f"{NAMESPACE}.control_plane"
            )

        await wait_until(ready, timeout=60, what="llama_deploy core")
        proc.ready_s = time.perf_counter() - started
        return proc

    async def start_service(self, http: httpx.AsyncClient, name: str, workflow: str) -> Proc:
        argv = [
            str(PY),
            str(LD / "service.py"),
            name,
            workflow,
            "--port",
            str(free_port()),
            "--control-plane-port",
            str(self.cp_port),
        ]
        started = time.perf_counter()
        proc = await self.procs.start(name, argv, env=self.env, ready_line=False)

        async def ready() -> bool:
            if proc.process.returncode is not None:
                raise RuntimeError(f"llama_deploy service {name} exited; see {proc.log_path}")
            return await _service_ready(http, self.cp_url, self.queue_url, name)

        await wait_until(ready, timeout=60, what=f"llama_deploy service {name}")
        proc.ready_s = time.perf_counter() - started
        return proc

    async def client_legs(self) -> dict[str, Any]:
        cfg = self.config
        argv = [
            str(PY),
            str(LD / "client.py"),
            "--control-plane-url",
            self.cp_url,
            "--seq",
            str(cfg.ld_seq_runs),
            "--tput",
            str(cfg.ld_tput_tasks),
            "--nested",
            str(cfg.ld_nested_runs),
            "--bound",
            str(cfg.leg_timeout),
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(cfg.leg_timeout * 4 + 60):
                stdout, stderr = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"llama_deploy client failed: {stderr.decode()[-2000:]}")
        result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
        return result

    async def run(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": VERSION}
        out["venv"] = await asyncio.to_thread(ensure_venv)
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                started = time.perf_counter()
                core = await self.start_core(http)
                wanted = [
                    ("echo", "EchoWorkflow"),
                    ("inner", "InnerWorkflow"),
                    ("outer", "OuterWorkflow"),
                    ("outer_readme", "outer_readme"),
                ]
                services = await asyncio.gather(
                    *(self.start_service(http, name, wf) for name, wf in wanted)
                )
                out["startup"] = {
                    "bring_up_s": round(time.perf_counter() - started, 3),
                    "how": "core, then its 4 services in parallel; ready = HTTP endpoints "
                    "answer and the consumer's topic exists on the queue",
                    "ready_s": {p.name: round(p.ready_s or 0.0, 3) for p in [core, *services]},
                }
                print("   llama_deploy up; running the client legs", flush=True)
                out.update(await self.client_legs())
                pids = {"core (queue + control plane)": core.pid}
                pids.update({f"service {p.name}": p.pid for p in services})
                out["idle"] = await idle(pids, self.config.idle_seconds)
        finally:
            await self.procs.stop_all()
        return out


async def run(config: BenchConfig, log_dir: Path) -> dict[str, Any]:
    procs = Procs(log_dir)
    try:
        out = await LlamaDeployBench(config, procs).run()
    except Exception as err:  # one broken leg must not lose the mesh's figures
        out = {"version": VERSION, "error": f"{type(err).__name__}: {err}"}
    try:
        out["floor"] = await asyncio.to_thread(
            floor.in_subprocess,
            str(PY),
            "ld_workflows:EchoWorkflow",
            config.ld_floor_runs,
            {"PYTHONPATH": str(LD), "PATH": "/usr/bin:/bin"},
        )
    except Exception as err:
        out["floor"] = {"n/a": f"{type(err).__name__}: {err}"}
    return out
