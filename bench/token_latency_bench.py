"""Agent legs: how long a model's token takes to reach the client through the mesh.

    .venv/bin/python bench/token_latency_bench.py            # full
    .venv/bin/python bench/token_latency_bench.py --quick    # reduced

Every component runs in its own process (`llama-mesh serve nats | control-plane |
service`), the agent `mesh_agents:talker` (a FunctionAgent on the LLM a deployment's
`models:` entry makes: OpenAILike on the mesh's model client) in one replica; the
scripted model server runs in a thread of this process and the client in its event
loop. The model streams each answer a token at a time, one every
`--interval-ms`, like a model generating ~100 tokens/s; the figure is, per token, the
time from the server writing its chunk (time.perf_counter() just before the write) to
the client receiving its `llama_mesh.agent.TextDelta` (time.perf_counter() on receipt):
HTTP to the replica, llama-index's stream, the mapper, the replica's journal request to
the control plane, its JetStream publish, the control plane's subscription and the
gRPC stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from procs import Procs, cpu_seconds
from stats import summary

from llama_mesh.client import AsyncClient
from llama_mesh.core import agent_events
from llama_mesh.testing import Reply, ScriptedModel

BENCH = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "llama_mesh"]


async def token_latency(
    client: AsyncClient, model: ScriptedModel, runs: int, tokens: int, interval: float
) -> dict[str, Any]:
    """Model chunk written -> TextDelta received, per token (ms)."""
    samples: list[float] = []
    session = await client.create_session()
    for _ in range(runs):
        model.script(Reply(chunks=[f"t{i} " for i in range(tokens)], interval=interval))
        before = len(model.requests)
        handle = await session.create_task("talker", user_msg="talk")
        received: dict[int, float] = {}
        async for event in handle.events():
            if event.type == agent_events.TextDelta.TYPE:
                received[int(event.payload["index"])] = time.perf_counter()
        sent = model.requests[before].chunk_times
        samples += [(received[i] - sent[i]) * 1e9 for i in sorted(received)]
        # A new session per run keeps the prompt (and the run's cost) the same.
        session = await client.create_session()
    result = summary([int(s) for s in samples])
    result["tokens"] = len(samples)
    result["interval_ms"] = interval * 1000
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    model = ScriptedModel()
    with tempfile.TemporaryDirectory(prefix="llama-mesh-agent-bench-") as tmp:
        procs = Procs(BENCH / "results" / "logs" / "agents")
        with model.serve_in_thread() as model_url:
            try:
                nats = await procs.start(
                    "nats", [*CLI, "serve", "nats", "--data-dir", str(Path(tmp) / "nats")]
                )
                pids = {"nats-server": int(nats.ready["pid"])}
                cp = await procs.start(
                    "control-plane",
                    [*CLI, "serve", "control-plane", "--nats", nats.ready["url"], "--port", "0"],
                )
                pids["control plane"] = cp.pid
                address = str(cp.ready["address"])
                env = {**os.environ, "SCRIPTED_MODEL_URL": model_url}
                replica = await procs.start(
                    "service-talker",
                    [
                        *CLI,
                        "serve",
                        "service",
                        "mesh_agents:talker",
                        "--name",
                        "talker",
                        "--control-plane",
                        address,
                        "--path",
                        str(BENCH),
                    ],
                    env=env,
                )
                async with AsyncClient(address) as client:
                    # One run to warm up imports and connections.
                    await token_latency(client, model, 1, 5, args.interval_ms / 1000)
                    pids["replica"] = replica.pid
                    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                    latency = await token_latency(
                        client, model, args.runs, args.tokens, args.interval_ms / 1000
                    )
                    # Steadier than the latency on a shared machine: it moves with the
                    # work per token more than with the load. The runs' other work (a
                    # task, its records, its end) is in it too.
                    latency["cpu_us_per_token_by_process"] = {
                        name: round((cpu_seconds(pid) - before[name]) / latency["tokens"] * 1e6)
                        for name, pid in pids.items()
                    }
                    results["token_latency"] = latency
            finally:
                await procs.stop_all()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 runs of 40 tokens")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.tokens = 5, 40
    load = os.getloadavg()[0]
    results = asyncio.run(run(args))
    # The machine is shared: a figure means little without the load it was taken under.
    results["load_average_start"] = round(load, 2)
    results["load_average_end"] = round(os.getloadavg()[0], 2)
    results["cpus"] = os.cpu_count()
    latency = results["token_latency"]
    print(
        f"token latency (model chunk written -> client TextDelta), {latency['tokens']} tokens: "
        f"p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms, p99 {latency['p99_ms']} ms "
        f"(target p50 <= 2 ms); load average {results['load_average_start']} -> "
        f"{results['load_average_end']} on {results['cpus']} CPUs"
    )
    cpu = latency["cpu_us_per_token_by_process"]
    print(
        "CPU per token (us, with the runs' other work): "
        + ", ".join(f"{name} {us}" for name, us in cpu.items())
    )
    out = BENCH / "results" / "agents.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
