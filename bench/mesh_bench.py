"""The llama-mesh legs: every component in its own process, the client in this one."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from config import BenchConfig
from procs import Proc, Procs, cpu_seconds, idle, memory_kib
from stats import summary

from llama_mesh.client import AsyncClient, AsyncSession
from llama_mesh.core.names import new_id
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2

BENCH = Path(__file__).resolve().parent
PY = sys.executable
CLI = [PY, "-m", "llama_mesh"]


@dataclass
class Mesh:
    """A running deployment: where to reach it and which processes it is."""

    address: str
    gateway_url: str
    base_pids: dict[str, int]
    # The admin token `up` wrote (None: authentication off).
    token: str | None = None
    # Replicas the bench starts itself (`llama-mesh serve service`), for the scaling leg.
    extra: dict[str, list[Proc]] = field(default_factory=dict)

    def pids(self) -> dict[str, int]:
        pids = dict(self.base_pids)
        for name, replicas in self.extra.items():
            for i, proc in enumerate(replicas, start=1):
                pids[f"{name} (extra replica {i})"] = proc.pid
        return pids


def _read_token(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _progress(leg: str) -> None:
    print(f"   {time.strftime('%H:%M:%S')} {leg}", flush=True)


SERVICES = [
    ("echo", "EchoWorkflow"),
    ("stream", "StreamWorkflow"),
    ("inner", "InnerWorkflow"),
    ("outer", "outer"),
]


class MeshBench:
    def __init__(self, config: BenchConfig, procs: Procs, profile_dir: Path | None) -> None:
        self.config = config
        self.procs = procs
        self.profile_dir = profile_dir
        self.results: dict[str, Any] = {}
        self.mesh: Mesh | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="llama-mesh-bench-")

    def _argv(self, name: str, args: list[str]) -> list[str]:
        """`python -m llama_mesh ARGS`, under pyinstrument when profiling."""
        if self.profile_dir is None or args[1] == "nats":
            return [*CLI, *args]
        return [*self._profiler(name), "-m", "llama_mesh", *args]

    def _profiler(self, name: str) -> list[str]:
        """pyinstrument around a component; its pstats file is summarized by report.py."""
        assert self.profile_dir is not None
        out = self.profile_dir / f"mesh-{name}.pstats"
        return [PY, "-m", "pyinstrument", "-r", "pstats", "-o", str(out)]

    async def start_service(
        self, mesh_address: str, name: str, workflow: str, index: int = 0
    ) -> Proc:
        label = f"service-{name}-{index}"
        # With authentication on, a replica presents its service's token (written by `up`).
        auth = Path(self._tmp.name) / "state" / "auth"
        token_file = auth / "services" / f"{name}.token"
        authenticated = self.mesh is not None and self.mesh.token is not None
        env = {**os.environ, "LLAMA_MESH_TOKEN_FILE": str(token_file)} if authenticated else None
        # Under up's locked-down NATS a replica connects with its service's nkey.
        seed = auth / "nats" / f"service-{name}.nk"
        nkey = ["--nkey-seed", str(seed)] if seed.exists() else []
        return await self.procs.start(
            label,
            self._argv(
                label,
                [
                    "serve",
                    "service",
                    f"mesh_workflows:{workflow}",
                    "--name",
                    name,
                    "--control-plane",
                    mesh_address,
                    "--path",
                    str(BENCH),
                    "--max-concurrency",
                    str(self.config.mesh_max_concurrency),
                    *nkey,
                ],
            ),
            env=env,
        )

    async def bring_up(self) -> Mesh:
        """`llama-mesh up` of a deployment file; staged by hand when profiling."""
        if self.profile_dir is not None:
            mesh = await self.bring_up_staged()
        else:
            mesh = await self.bring_up_with_up()
        self.mesh = mesh
        return mesh

    def deployment_file(self) -> Path:
        """The bench's deployment: every port picked by the OS, state in a temp dir."""
        tmp = Path(self._tmp.name)
        lines = [
            "name: bench",
            f"state_dir: {tmp / 'state'}",
            f"security: {{auth: {'true' if self.config.auth else 'false'}}}",
            "nats:",
            "  port: -1",
            "control_plane:",
            "  port: 0",
            "gateway:",
            "  port: 0",
            "services:",
        ]
        for name, workflow in SERVICES:
            lines += [
                f"  {name}:",
                f"    source: mesh_workflows:{workflow}",
                f"    path: {BENCH}",
                f"    max_concurrency: {self.config.mesh_max_concurrency}",
            ]
        path = tmp / "deployment.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    async def bring_up_with_up(self) -> Mesh:
        up = await self.procs.start(
            "up", [*CLI, "up", "--output", "json", str(self.deployment_file())]
        )
        ready = up.ready
        pids = {"up (supervisor)": up.pid}
        for name, pid in ready["pids"].items():
            pids[name] = int(pid)
        self.results["startup"] = {
            "bring_up_s": round(up.ready_s or 0.0, 3),
            "how": "`llama-mesh up --output json` of a deployment file (nats, control "
            "plane, 4 services, gateway) until its ready line",
        }
        token_file = ready.get("admin_token_file")
        token = _read_token(token_file) if token_file else None
        return Mesh(str(ready["control_plane"]), str(ready["gateway"]), pids, token=token)

    async def bring_up_staged(self) -> Mesh:
        """Each component on its own, so that each can run under pyinstrument."""
        started = time.perf_counter()
        nats = await self.procs.start(
            "nats",
            self._argv(
                "nats",
                ["serve", "nats", "--data-dir", str(Path(self._tmp.name) / "nats")],
            ),
        )
        control_plane = await self.procs.start(
            "control-plane",
            self._argv(
                "control-plane",
                ["serve", "control-plane", "--nats", nats.ready["url"], "--port", "0"],
            ),
        )
        address = str(control_plane.ready["address"])
        gateway_argv = ["serve", "gateway", "--upstream", address, "--port", "0"]
        gateway, *services = await asyncio.gather(
            self.procs.start("gateway", self._argv("gateway", gateway_argv)),
            *(self.start_service(address, name, wf) for name, wf in SERVICES),
        )
        bring_up_s = time.perf_counter() - started
        # `serve nats` says in its ready line which pid the nats-server binary has.
        pids = {"nats (launcher)": nats.pid, "nats-server": int(nats.ready["pid"])}
        pids["control-plane"] = control_plane.pid
        pids["gateway"] = gateway.pid
        pids.update({f"service {p.name}": p.pid for p in services})
        self.results["startup"] = {
            "bring_up_s": round(bring_up_s, 3),
            "how": "staged by the bench for profiling: nats, control plane, then gateway "
            "+ services in parallel",
            "ready_s": {
                p.name: round(p.ready_s or 0.0, 3)
                for p in [nats, control_plane, gateway, *services]
            },
        }
        return Mesh(address, str(gateway.ready["url"]), pids)

    # ------------------------------------------------------------------ legs

    async def sequential(self, client: AsyncClient, runs: int) -> dict[str, Any]:
        """`session.run` (CreateTask + WaitTask), with where the time went.

        The finished task's own timestamps split each call: create_time→start_time is
        queueing (control plane → JetStream → a replica picks it up), start_time→end_time
        is the replica's attempt, and the rest is the client's two RPCs around them.
        """
        session = await client.create_session()
        for _ in range(self.config.warmup):
            await session.run("echo", arg1="x")
        samples: list[int] = []
        queued: list[int] = []
        attempt: list[int] = []
        deadline = time.monotonic() + self.config.leg_timeout
        for i in range(runs):
            t0 = time.perf_counter_ns()
            handle = await session.create_task("echo", arg1=f"x{i}")
            task = await handle.wait()
            samples.append(time.perf_counter_ns() - t0)
            assert task.result.string_value == f"x{i}_result", task
            start, end = task.start_time.ToNanoseconds(), task.end_time.ToNanoseconds()
            queued.append(start - task.create_time.ToNanoseconds())
            attempt.append(end - start)
            if time.monotonic() > deadline:
                break
        out = summary(samples)
        out["breakdown_p50_ms"] = {
            "create_to_start (queueing)": summary(queued).get("p50_ms"),
            "start_to_end (attempt on the replica)": summary(attempt).get("p50_ms"),
        }
        return out

    async def sequential_run_task(self, client: AsyncClient, runs: int) -> dict[str, Any]:
        """The same through one RunTask RPC (what the REST gateway calls)."""
        session = await client.create_session()
        samples: list[int] = []
        deadline = time.monotonic() + self.config.leg_timeout
        for i in range(self.config.warmup + runs):
            task = resources_pb2.Task(service="echo")
            task.input.update({"arg1": f"x{i}"})
            request = cp.RunTaskRequest(parent=session.name, task=task, request_id=new_id())
            t0 = time.perf_counter_ns()
            response = await client.stub.RunTask(
                request, timeout=30, metadata=client.credentials.metadata()
            )
            elapsed = time.perf_counter_ns() - t0
            assert response.task.result.string_value == f"x{i}_result", response.task
            if i >= self.config.warmup:
                samples.append(elapsed)
            if time.monotonic() > deadline:
                break
        return summary(samples)

    async def rest_sequential(self, url: str, runs: int) -> dict[str, Any]:
        samples: list[int] = []
        token = self.mesh.token if self.mesh is not None else None
        headers = {"authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as http:
            response = await http.post("/v1/sessions", json={})
            response.raise_for_status()
            session = response.json()["name"]
            deadline = time.monotonic() + self.config.leg_timeout
            for i in range(self.config.warmup + runs):
                body = {"task": {"service": "echo", "input": {"arg1": f"x{i}"}}}
                t0 = time.perf_counter_ns()
                response = await http.post(f"/v1/{session}/tasks:run", json=body)
                elapsed = time.perf_counter_ns() - t0
                response.raise_for_status()
                assert response.json()["result"] == f"x{i}_result", response.text
                if i >= self.config.warmup:
                    samples.append(elapsed)
                if time.monotonic() > deadline:
                    break
        return summary(samples)

    async def throughput(
        self, client: AsyncClient, concurrency: int, tasks: int, service: str = "echo"
    ) -> dict[str, Any]:
        """`tasks` runs by `concurrency` workers, each in its own session."""
        sessions = await asyncio.gather(*(client.create_session() for _ in range(concurrency)))
        await asyncio.gather(*(s.run(service, arg1="warm") for s in sessions))
        samples: list[int] = []
        remaining = tasks
        deadline = time.monotonic() + self.config.leg_timeout

        async def worker(session: AsyncSession) -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                t0 = time.perf_counter_ns()
                await session.run(service, arg1="x")
                samples.append(time.perf_counter_ns() - t0)

        pids = self.mesh.pids() if self.mesh else {}
        pids["bench client"] = os.getpid()
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(s) for s in sessions))
        elapsed = time.perf_counter() - t0
        n = max(1, len(samples))
        cpu_ms = {
            name: round(1000 * (cpu_seconds(pid) - cpu_before[name]) / n, 3)
            for name, pid in pids.items()
        }
        return {
            "concurrency": concurrency,
            "tasks": len(samples),
            "seconds": round(elapsed, 3),
            "tasks_per_s": round(len(samples) / elapsed, 1),
            "latency": summary(samples),
            # CPU each process spent per task: where throughput goes on 2 cores.
            "cpu_ms_per_task": {k: v for k, v in cpu_ms.items() if v > 0},
            "cpu_ms_per_task_total": round(sum(cpu_ms.values()), 3),
        }

    async def nested(self, client: AsyncClient, runs: int) -> dict[str, Any]:
        session = await client.create_session()
        for _ in range(self.config.warmup):
            await session.run("outer", arg1="x")
        samples: list[int] = []
        deadline = time.monotonic() + self.config.leg_timeout
        for i in range(runs):
            t0 = time.perf_counter_ns()
            result = await session.run("outer", arg1=f"x{i}")
            samples.append(time.perf_counter_ns() - t0)
            assert result == f"x{i}_result_result", result
            if time.monotonic() > deadline:
                break
        return summary(samples)

    async def event_latency(self, client: AsyncClient, tasks: int, events: int) -> dict[str, Any]:
        """Tick written in the workflow → received by the client (time.time_ns on both)."""
        session = await client.create_session()
        samples: list[int] = []
        deadline = time.monotonic() + self.config.leg_timeout
        for _ in range(tasks):
            handle = await session.create_task("stream", n=events, gap_ms=5)
            async for event in handle.events():
                now = time.time_ns()
                payload = event.payload
                # The first Tick may be written before the stream is open: skip it.
                if event.type.endswith("Tick") and isinstance(payload, dict) and payload["i"] > 0:
                    samples.append(now - int(payload["t_ns"]))
            if time.monotonic() > deadline:
                break
        return summary(samples)

    async def scaling(self, mesh: Mesh, client: AsyncClient) -> list[dict[str, Any]]:
        """Throughput at concurrency 64 with 1, 2 and 4 echo replicas."""
        rows = []
        replicas = mesh.extra.setdefault("echo", [])
        for count in self.config.replicas:
            while 1 + len(replicas) < count:
                replicas.append(
                    await self.start_service(
                        mesh.address, "echo", "EchoWorkflow", 1 + len(replicas)
                    )
                )
            row = await self.throughput(client, 64, self.config.scaling_tasks)
            row["replicas"] = count
            rows.append(row)
        # Back to one replica for the legs that follow.
        while replicas:
            await self.procs.stop(replicas.pop())
        return rows

    async def history(self, mesh: Mesh, client: AsyncClient) -> list[dict[str, Any]]:
        """Cost per task once 1k, 10k (and 100k) tasks have gone through."""
        rows = []
        done = 0
        sessions = await asyncio.gather(*(client.create_session() for _ in range(64)))
        deadline = time.monotonic() + self.config.history_timeout
        for checkpoint in self.config.history:
            remaining = checkpoint - done

            async def filler(session: AsyncSession) -> None:
                nonlocal remaining, done
                while remaining > 0 and time.monotonic() < deadline:
                    remaining -= 1
                    await session.run("echo", arg1="h")
                    done += 1

            await asyncio.gather(*(filler(s) for s in sessions))
            _progress(f"  {done:,} tasks done")
            if done < checkpoint:
                rows.append({"after_tasks": checkpoint, "reached": done, "error": "time bound"})
                break
            seq = await self.sequential(client, self.config.history_seq_runs)
            tput = await self.throughput(client, 64, self.config.history_tput_tasks)
            done += self.config.history_seq_runs + self.config.history_tput_tasks + 64
            rows.append(
                {
                    "after_tasks": checkpoint,
                    "sequential": seq,
                    "tasks_per_s_c64": tput["tasks_per_s"],
                    "ms_per_task_c64": round(1000.0 / tput["tasks_per_s"], 3),
                    "rss_kib": {k: memory_kib(p)["VmRSS"] for k, p in mesh.pids().items()},
                    # JetStream's files (streams and KV buckets) in the state directory.
                    "store_mib": round(_tree_bytes(Path(self._tmp.name)) / 2**20, 1),
                }
            )
        return rows

    # ------------------------------------------------------------------ all

    async def run(self) -> dict[str, Any]:
        cfg = self.config
        try:
            mesh = await self.bring_up()
            async with AsyncClient(mesh.address, token=mesh.token) as client:
                r = self.results
                _progress("echo, Python client")
                r["echo_grpc"] = await self.sequential(client, cfg.seq_runs)
                _progress("echo, one RunTask RPC")
                r["echo_grpc_runtask"] = await self.sequential_run_task(client, cfg.seq_runs)
                _progress("echo, REST gateway")
                r["echo_rest"] = await self.rest_sequential(mesh.gateway_url, cfg.seq_runs)
                r["rest_minus_grpc_p50_ms"] = round(
                    r["echo_rest"]["p50_ms"] - r["echo_grpc"]["p50_ms"], 3
                )
                _progress(f"throughput at concurrency {cfg.concurrencies}")
                r["throughput"] = [
                    await self.throughput(client, c, cfg.throughput_tasks(c))
                    for c in cfg.concurrencies
                ]
                _progress("nested outer->inner")
                try:
                    r["nested"] = await self.nested(client, cfg.nested_runs)
                except Exception as err:  # reported as n/a with the reason
                    r["nested"] = {"n/a": f"{type(err).__name__}: {err}"}
                _progress("event latency")
                r["events"] = await self.event_latency(client, cfg.event_tasks, cfg.events_per_task)
                _progress("idle CPU and RSS")
                r["idle"] = await idle(mesh.pids(), cfg.idle_seconds)
                _progress("scaling: 1, 2, 4 echo replicas")
                r["scaling"] = await self.scaling(mesh, client)
                if cfg.history:
                    _progress(f"history: {cfg.history} tasks")
                    r["history"] = await self.history(mesh, client)
        finally:
            await self.procs.stop_all()
            self._tmp.cleanup()
        return self.results
