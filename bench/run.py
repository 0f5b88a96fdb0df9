"""llama-mesh side by side with llama_deploy 0.8.1, in one run.

    .venv/bin/python bench/run.py            # make bench
    .venv/bin/python bench/run.py --quick    # make bench-quick (under 2 minutes)

Options: --only mesh|llama_deploy, --profile (mesh components under pyinstrument,
reports in bench/results/profiles/), --out FILE (default bench/results/latest.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent

import config  # noqa: E402
import floor  # noqa: E402
import ld_harness  # noqa: E402
import report  # noqa: E402
from mesh_bench import MeshBench  # noqa: E402
from procs import Procs  # noqa: E402


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config.quick() if args.quick else config.BenchConfig()
    cfg.auth = not args.no_auth
    results_dir = BENCH / "results"
    profile_dir = results_dir / "profiles" if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": cfg.as_dict(),
        # Others' work on this machine skews the figures: say how busy it was.
        "load_average": {"start": round(os.getloadavg()[0], 2)},
    }
    started = time.perf_counter()
    if args.only in (None, "mesh"):
        print("== llama-mesh", flush=True)
        procs = Procs(results_dir / "logs" / "mesh", grace=60.0 if args.profile else 10.0)
        mesh = await MeshBench(cfg, procs, profile_dir).run()
        mesh["floor"] = floor.in_subprocess(
            sys.executable, "mesh_workflows:EchoWorkflow", cfg.floor_runs, dict(os.environ)
        )
        out["llama_mesh"] = mesh
    if args.only in (None, "llama_deploy"):
        print("== llama_deploy 0.8.1", flush=True)
        out["llama_deploy"] = await ld_harness.run(cfg, results_dir / "logs" / "llama_deploy")
    out["total_s"] = round(time.perf_counter() - started, 1)
    out["load_average"]["end"] = round(os.getloadavg()[0], 2)
    out["table"] = [
        dict(zip(("metric", "llama_mesh", "llama_deploy", "ratio", "target"), row, strict=True))
        for row in report.rows(out)
    ]
    out["targets"] = report.targets(out)
    if profile_dir is not None:
        out["profiles"] = report.summarize_profiles(profile_dir)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced run, under 2 minutes")
    parser.add_argument("--only", choices=["mesh", "llama_deploy"])
    parser.add_argument("--profile", action="store_true", help="profile mesh components")
    parser.add_argument(
        "--no-auth", action="store_true", help="deployment without authentication (its cost)"
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "latest.json")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    report.print_table(results)
    print(f"\nJSON: {args.out}")


if __name__ == "__main__":
    main()
