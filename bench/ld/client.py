"""The llama_deploy client legs (its venv only); prints one JSON line of results.

    python bench/ld/client.py --control-plane-url http://127.0.0.1:P --seq 100 ...

Uses llama_deploy's own async client with its defaults (it polls for results every
`poll_interval` = 0.5 s), as a user of 0.8.1 would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from llama_deploy.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stats import summary


async def sequential(client: Client, service: str, runs: int, expect: str, bound: float) -> Any:
    session = await client.core.sessions.create()
    await session.run(service, arg1="warm")
    samples = []
    deadline = time.monotonic() + bound
    for i in range(runs):
        t0 = time.perf_counter_ns()
        result = await session.run(service, arg1=f"x{i}")
        samples.append(time.perf_counter_ns() - t0)
        assert result == f"x{i}{expect}", result
        if time.monotonic() > deadline:
            break
    return summary(samples)


async def throughput(client: Client, concurrency: int, tasks: int, bound: float) -> Any:
    sessions = await asyncio.gather(*(client.core.sessions.create() for _ in range(concurrency)))
    samples: list[int] = []
    remaining = tasks
    deadline = time.monotonic() + bound

    async def worker(session: Any) -> None:
        nonlocal remaining
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            t0 = time.perf_counter_ns()
            result = await session.run("echo", arg1="x")
            samples.append(time.perf_counter_ns() - t0)
            assert result == "x_result", result

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in sessions))
    elapsed = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "tasks": len(samples),
        "seconds": round(elapsed, 3),
        "tasks_per_s": round(len(samples) / elapsed, 2),
        "latency": summary(samples),
    }


async def readme_nested(client: Client, timeout: float) -> dict[str, Any]:
    """One call of the README's nested setup: does it work in 0.8.1?"""
    session = await client.core.sessions.create()
    try:
        result = await asyncio.wait_for(session.run("outer_readme", arg1="x"), timeout)
    except Exception as err:  # report whatever happens, it is the finding
        return {"works": False, "error": f"{type(err).__name__}: {err}"}
    return {"works": result == "x_result_result", "result": result}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    client = Client(control_plane_url=args.control_plane_url, timeout=60.0)
    out: dict[str, Any] = {"poll_interval_s": client.poll_interval}
    out["echo"] = await sequential(client, "echo", args.seq, "_result", args.bound)
    out["throughput_c16"] = await throughput(client, 16, args.tput, args.bound)
    if args.nested:
        out["nested"] = await sequential(client, "outer", args.nested, "_result_result", args.bound)
        out["readme_nested"] = await readme_nested(client, 15.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--control-plane-url", required=True)
    parser.add_argument("--seq", type=int, default=100)
    parser.add_argument("--tput", type=int, default=160)
    parser.add_argument("--nested", type=int, default=30)
    parser.add_argument("--bound", type=float, default=120.0, help="seconds per leg at most")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
