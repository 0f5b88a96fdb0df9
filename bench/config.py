"""How much the bench runs: `full` (make bench) and `quick` (make bench-quick)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class BenchConfig:
    mode: str = "full"
    # `up`'s default: every call authenticated (bench --no-auth measures without).
    auth: bool = True
    warmup: int = 20
    seq_runs: int = 1000
    concurrencies: list[int] = field(default_factory=lambda: [1, 16, 64, 256])
    tasks_per_level: int = 3000
    nested_runs: int = 500
    event_tasks: int = 50
    events_per_task: int = 21
    idle_seconds: float = 10.0
    replicas: list[int] = field(default_factory=lambda: [1, 2, 4])
    scaling_tasks: int = 3000
    history: list[int] = field(default_factory=lambda: [1_000, 10_000, 100_000])
    history_seq_runs: int = 200
    history_tput_tasks: int = 2000
    mesh_max_concurrency: int = 64
    # Bounds: no leg runs longer than this, whatever its count.
    leg_timeout: float = 120.0
    history_timeout: float = 900.0
    # llama_deploy (about 0.6 s per call: counts are smaller).
    ld_seq_runs: int = 100
    ld_tput_tasks: int = 160
    ld_nested_runs: int = 30
    ld_floor_runs: int = 2000
    floor_runs: int = 2000

    def throughput_tasks(self, concurrency: int) -> int:
        # Sequential-ish levels would take long for little information.
        if concurrency == 1:
            return min(self.tasks_per_level, self.seq_runs)
        return max(self.tasks_per_level, concurrency * 4)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def quick() -> BenchConfig:
    """Under 2 minutes: fewer runs, 3 s of idle, no 100k history."""
    return BenchConfig(
        mode="quick",
        warmup=10,
        seq_runs=100,
        tasks_per_level=200,
        nested_runs=100,
        event_tasks=10,
        events_per_task=11,
        idle_seconds=3.0,
        scaling_tasks=200,
        history=[1_000, 3_000],
        history_seq_runs=50,
        history_tput_tasks=200,
        leg_timeout=30.0,
        history_timeout=40.0,
        ld_seq_runs=10,
        ld_tput_tasks=32,
        ld_nested_runs=5,
        ld_floor_runs=500,
        floor_runs=500,
    )
