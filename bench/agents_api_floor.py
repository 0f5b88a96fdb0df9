"""The floor of an Agents API turn: the built-in agent service's turn in one process, no mesh.

    .venv/bin/python bench/agents_api_floor.py --model-url http://127.0.0.1:PORT/v1

The same agent the mesh's built-in agent service runs (bench/mesh_agents_api.py's
ConfiguredAgentRunner, the llama-index FunctionAgent with the same model settings),
given the turn input the control plane gives it for the bench's plain agent, on a
scripted model over real HTTP: llama-index and the HTTP to the model, nothing of the
mesh (no NATS, no gRPC, no gateway, no session or task records). No mesh can run a
turn in less time or CPU than this.

agents_api_bench.py runs it as its `floor` leg, in a process of its own (like the
replica: the model server stays in the bench process and is not counted), and prints
its figures beside the targets. Prints one JSON object: each timed turn's wall-clock
time and when it saw its first text delta (time.perf_counter, the clock the model
server records its chunks with), and the process's CPU time per turn over the timed
turns (all its threads: llama-index hands memory calls to threads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from mesh_agents_api import agents  # the replica's runner and settings
from stats import summary
from workflows.handler import WorkflowHandler

from llama_mesh.core import agent_events as ae
from llama_mesh.testing import ScriptedModel
from llama_mesh.v1 import resources_pb2

# What the control plane sends the built-in agent service for the first turn of a
# session of the bench's plain agent (`PLAIN` in agents_api_bench.py).
TURN = {
    "agent_id": "floor",
    "agent_config": {"model": "scripted", "instructions": "You are terse."},
    "messages": [{"role": "user", "content": "hello"}],
}
WARM_UP = 5


async def measure(runs: int) -> dict[str, Any]:
    runner = agents()
    first_delta: list[float | None] = []  # each turn's, in order

    async def on_event(event: resources_pb2.TaskEvent, handler: WorkflowHandler) -> None:
        if event.type == ae.TextDelta.TYPE and first_delta[-1] is None:
            first_delta[-1] = time.perf_counter()

    async def turn() -> int:
        first_delta.append(None)
        start = time.perf_counter_ns()
        await runner.run(TURN, None, on_event)
        return time.perf_counter_ns() - start

    for _ in range(WARM_UP):
        await turn()
    first_delta.clear()
    cpu_start = time.process_time()
    totals = [await turn() for _ in range(runs)]
    cpu = time.process_time() - cpu_start
    return {
        "turn_ns": totals,
        "first_delta_at": first_delta,
        "cpu_ms_per_turn": round(cpu / runs * 1000, 2),
    }


async def floor(model: ScriptedModel, model_url: str, runs: int) -> dict[str, Any]:
    """The floor leg, run from agents_api_bench.py: this module in a process of its own,
    on the bench's model server."""
    before = len(model.requests)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--model-url",
        model_url,
        "--runs",
        str(runs),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the floor leg failed (exit {proc.returncode})")
    found = json.loads(out)
    # One model request per turn, one turn after another: the last `runs` are timed.
    timed = model.requests[before:][-runs:]
    lags = [
        int((seen - request.chunk_times[0]) * 1e9)
        for seen, request in zip(found["first_delta_at"], timed, strict=True)
        if seen is not None and request.chunk_times
    ]
    return {
        "turn": summary(found["turn_ns"]),
        "first_delta_after_model_chunk": summary(lags),
        "cpu_ms_per_turn": found["cpu_ms_per_turn"],
    }


def beside_targets(
    floor_r: dict[str, Any], mesh_r: dict[str, Any] | None, ls_r: dict[str, Any] | None
) -> list[str]:
    """The floor beside each target it bounds, as lines to print."""
    turn = floor_r["turn"]["p50_ms"]
    lag = floor_r["first_delta_after_model_chunk"].get("p50_ms")
    cpu = floor_r["cpu_ms_per_turn"]
    lines = [
        f"in-process floor: turn p50 {turn} ms, first delta {lag} ms after the model's "
        f"chunk, CPU {cpu} ms per turn (at most {1000 / cpu:.0f} turns/s on one core, "
        f"{2000 / cpu:.0f} on two)"
    ]
    if ls_r is not None and "plain" in ls_r:
        tenth = ls_r["plain"]["turn"]["p50_ms"] / 10
        lines.append(f"plain turn p50: 1/10 of the reference = {tenth:.1f} ms; floor = {turn} ms")
    lines.append(f"first delta after the model's chunk: target 5 ms; floor = {lag} ms")
    if ls_r is not None and "concurrent" in ls_r:
        goal = 5 * ls_r["concurrent"]["turns_per_s"]
        lines.append(
            f"turns/s: 5x the reference = {goal:.0f} turns/s, i.e. <= {2000 / goal:.1f} ms "
            f"of CPU per turn on 2 cores; floor = {cpu} ms"
        )
    if mesh_r is not None and "concurrent" in mesh_r:
        lines.append(
            f"mesh CPU per turn {mesh_r['concurrent']['cpu_ms_per_turn']} ms = floor "
            f"{cpu} ms + {mesh_r['concurrent']['cpu_ms_per_turn'] - cpu:.1f} ms of the mesh"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-url", required=True)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    os.environ["SCRIPTED_MODEL_URL"] = args.model_url
    print(json.dumps(asyncio.run(measure(args.runs))))


if __name__ == "__main__":
    main()
