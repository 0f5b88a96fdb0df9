"""The CPU an agent turn costs the replica, without NATS: the built-in agent service's
runner (ConfiguredAgentRunner) in this process, on the scripted model server (a thread).

    .venv/bin/python bench/agent_turn_cpu.py               # 60 turns
    .venv/bin/python bench/agent_turn_cpu.py --turns 200

It prints the event loop thread's CPU time per turn (time.thread_time: the model
server's thread is not counted), for turns of fresh sessions and for the first and last
turns of one session that grows. CPU time is steadier than wall-clock times on a busy
machine; the figure is what the replica's own code and llama-index cost, the part of
`agents_api_bench.py`'s "CPU per turn" that grows with the conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from workflows.handler import WorkflowHandler

from llama_mesh.config import ModelConfig
from llama_mesh.testing import Reply, ScriptedModel
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.configured_agent import ConfiguredAgentRunner

CONFIG = {"model": "scripted", "instructions": "You are terse."}
TURN = {
    "agent_id": "bench",
    "agent_config": CONFIG,
    "messages": [{"role": "user", "content": "hi"}],
}


async def _ignore(event: resources_pb2.TaskEvent, handler: WorkflowHandler) -> None:
    pass


async def measure(url: str, turns: int) -> dict[str, Any]:
    runner = ConfiguredAgentRunner({"scripted": ModelConfig(base_url=url, max_retries=0)})

    async def turn(saved: dict[str, Any] | None) -> tuple[float, dict[str, Any]]:
        start = time.thread_time()
        outcome = await runner.run(TURN, saved, _ignore)
        return (time.thread_time() - start) * 1000, outcome.context

    fresh = [(await turn(None))[0] for _ in range(turns)][5:]  # the first warm up
    grown: list[float] = []
    saved = None
    for _ in range(turns):
        spent, saved = await turn(json.loads(json.dumps(saved)))  # as the session keeps it
        grown.append(spent)
    first, last = statistics.median(grown[1:11]), statistics.median(grown[-10:])
    return {
        "fresh_session_cpu_ms_p50": round(statistics.median(fresh), 2),
        "one_session_turns": turns,
        "first_turns_cpu_ms_p50": round(first, 2),
        "last_turns_cpu_ms_p50": round(last, 2),
        "last_over_first": round(last / first, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=60)
    args = parser.parse_args()
    model = ScriptedModel()
    model.respond_with(
        lambda _: Reply("Hello there, friend.", chunks=["Hello ", "there, ", "friend."])
    )
    with model.serve_in_thread() as url:
        print(json.dumps(asyncio.run(measure(url, args.turns)), indent=1))


if __name__ == "__main__":
    main()
