"""Agent legs: what a tool call through the mesh costs over the same tool in-process, and
the memory of agent runs that wait on a person's answer.

    .venv/bin/python bench/agent_tools_bench.py [--calls 500] [--waiting 1000]

Every component runs in its own process (`llama-mesh serve ...`, services from
bench/agent_services.py); the scripted model server runs in this one.

- tool call: inside a task of `loop`, `add(a, b)` called sequentially as a llama-index
  FunctionTool in-process, then through MeshTools on the tool service `tools` (a child
  task per call: CreateTask, the tool service's run, WaitTask); p50/p99 of each and the
  difference; and, for scale, the same tool run as a task by a client (RunTask).
- waiting runs: `--waiting` agent runs (FunctionAgent, each in its own session) whose
  model calls the human service as a tool; once every question waits in the inbox, the
  RSS of each process minus its RSS after one warm-up run, per waiting run; then every
  question is answered and the runs complete.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import Procs, memory_kib
from stats import summary

from llama_mesh.client import AsyncClient, TaskHandle
from llama_mesh.testing import RecordedRequest, Reply, ScriptedModel, ToolCall

BENCH = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "llama_mesh"]
QUESTION = "What is your favourite colour?"


def _service(name: str, source: str, address: str, *extra: str) -> list[str]:
    return [*CLI, "serve", "service", source, "--name", name, "--control-plane", address, *extra]


def _ask_then_report(request: RecordedRequest) -> Reply:
    """The asker's model: call the human; once the answer is in, report it."""
    last = request.messages[-1]
    if last.get("role") == "tool":
        return Reply(f"The person said: {last.get('content')}")
    return Reply(tool_calls=[ToolCall("human", {"question": QUESTION})])


async def _waiting_question(client: AsyncClient, run: TaskHandle) -> str:
    """The name of the human task `run` waits on, once it waits."""
    async for event in run.events():
        if event.type == "llama_mesh.ChildTaskCreated":
            child = client.task(event.payload["task"])
            async for child_event in child.events():
                if child_event.state == "WAITING_FOR_INPUT":
                    return child.name
    raise RuntimeError(f"{run.name} ended without asking")


def _rss_mib(pids: dict[str, int]) -> dict[str, float]:
    return {name: memory_kib(pid)["VmRSS"] / 1024 for name, pid in pids.items()}


async def tool_call_leg(address: str, procs: Procs, env: dict[str, str], calls: int) -> Any:
    await procs.start("tools", _service("tools", "agent_services:tools", address), env=env)
    await procs.start("loop", _service("loop", "agent_services:ToolCallLoop", address), env=env)
    async with AsyncClient(address) as client:
        session = await client.create_session()
        timings = await session.run("loop", n=calls, tools_service="tools")
        # For scale: the same tool as a task run by a client (one RunTask).
        direct = []
        for i in range(calls):
            started = time.perf_counter_ns()
            await session.run("tools", tool="add", arguments={"a": i, "b": 1})
            direct.append(time.perf_counter_ns() - started)
    local, mesh = summary(timings["in_process"]), summary(timings["mesh"])
    return {
        "in_process": local,
        "mesh": mesh,
        "client_run_task": summary(direct),
        "overhead_p50_ms": round(mesh["p50_ms"] - local["p50_ms"], 3),
        "overhead_p99_ms": round(mesh["p99_ms"] - local["p99_ms"], 3),
    }


async def waiting_leg(
    address: str, procs: Procs, env: dict[str, str], nats_pid: int, cp_pid: int, waiting: int
) -> Any:
    model = ScriptedModel().respond_with(_ask_then_report)
    limit = str(waiting + 16)
    async with model.serve() as url, AsyncClient(address, timeout=600) as client:
        env = {**env, "SCRIPTED_MODEL_URL": url}
        human = await procs.start(
            "human",
            _service("human", "agent_services:human", address, "--max-concurrency", limit),
            env=env,
        )
        asker = await procs.start(
            "asker",
            _service("asker", "agent_services:asker", address, "--max-concurrency", limit),
            env=env,
        )
        pids = {"nats-server": nats_pid, "control-plane": cp_pid}
        pids |= {"human": human.pid, "asker": asker.pid}

        async def one_run() -> TaskHandle:
            session = await client.create_session()
            return await session.create_task("asker", user_msg="Ask the person.")

        # One run from start to end, so that every process has loaded what it uses.
        warm = await one_run()
        await client.answer(await _waiting_question(client, warm), "blue")
        await warm.result()
        before = _rss_mib(pids)

        started = time.perf_counter()
        runs = await asyncio.gather(*(one_run() for _ in range(waiting)))
        gate = asyncio.Semaphore(64)

        async def question(run: TaskHandle) -> str:
            async with gate:
                return await _waiting_question(client, run)

        questions = await asyncio.gather(*(question(r) for r in runs))
        all_waiting_s = time.perf_counter() - started
        inbox = len(await client.inbox())
        during = _rss_mib(pids)

        started = time.perf_counter()

        async def answer(name: str) -> None:
            async with gate:
                await client.answer(name, "green")

        await asyncio.gather(*(answer(q) for q in questions))
        results = await asyncio.gather(*(r.result() for r in runs))
        answered_s = time.perf_counter() - started
    delta = {name: during[name] - before[name] for name in pids}
    return {
        "waiting_runs": waiting,
        "inbox_when_waiting": inbox,
        "seconds_until_all_wait": round(all_waiting_s, 2),
        "seconds_to_answer_and_complete": round(answered_s, 2),
        "rss_before_mib": {k: round(v, 1) for k, v in before.items()},
        "rss_waiting_mib": {k: round(v, 1) for k, v in during.items()},
        "kib_per_waiting_run": {k: round(v * 1024 / waiting, 1) for k, v in delta.items()},
        "kib_per_waiting_run_total": round(sum(delta.values()) * 1024 / waiting, 1),
        "completed": sum(1 for r in results if "green" in json.dumps(r)),
        "model_requests": len(model.requests),
    }


async def main(calls: int, waiting: int) -> dict[str, Any]:
    procs = Procs(BENCH / "results" / "logs" / "agents")
    env = {"PYTHONPATH": str(BENCH)}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            nats = await procs.start(
                "nats", [*CLI, "serve", "nats", "--data-dir", str(Path(tmp) / "nats")]
            )
            cp = await procs.start(
                "control-plane",
                [*CLI, "serve", "control-plane", "--nats", nats.ready["url"], "--port", "0"],
            )
            address = cp.ready["address"]
            report = {"tool_call": await tool_call_leg(address, procs, env, calls)}
            report["waiting"] = await waiting_leg(
                address, procs, env, int(nats.ready["pid"]), cp.pid, waiting
            )
        finally:
            await procs.stop_all()
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="Tool calls of each kind.")
    parser.add_argument("--waiting", type=int, default=1000, help="Agent runs left waiting.")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.calls, args.waiting)), indent=2))
