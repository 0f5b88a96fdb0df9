"""The floor: in-process `Workflow.run` of the echo workflow, no deployment at all.

    python bench/floor.py --runs 2000 --workflow mesh_workflows:EchoWorkflow

Prints one JSON line: latency summary and runs/s. Runs in either venv (the mesh's or
llama_deploy's), each with its own llama-index workflows version.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stats import summary


async def measure(reference: str, runs: int) -> dict[str, object]:
    module, _, attr = reference.partition(":")
    workflow = getattr(importlib.import_module(module), attr)()
    for _ in range(min(50, runs)):
        await workflow.run(arg1="warm")
    samples = []
    started = time.perf_counter()
    for i in range(runs):
        t0 = time.perf_counter_ns()
        result = await workflow.run(arg1=f"x{i}")
        samples.append(time.perf_counter_ns() - t0)
        assert str(result) == f"x{i}_result", result
    elapsed = time.perf_counter() - started
    return {"latency": summary(samples), "runs_per_s": round(runs / elapsed, 1)}


def in_subprocess(python: str, workflow: str, runs: int, env: dict[str, str]) -> dict[str, Any]:
    """This script under `python` (either venv) with environment `env`; its JSON line."""
    out = subprocess.run(
        [python, __file__, "--runs", str(runs), "--workflow", workflow],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--workflow", required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.workflow, args.runs))), flush=True)


if __name__ == "__main__":
    main()
