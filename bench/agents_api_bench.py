"""The Agents API and the Responses API: llama-mesh and llama-stack 0.2.12 side by side.

    .venv/bin/python bench/agents_api_bench.py            # full
    .venv/bin/python bench/agents_api_bench.py --quick    # reduced
    .venv/bin/python bench/agents_api_bench.py --only mesh

Both systems answer the same client code (the real llama-stack-client 0.2.12 and the
openai SDK, in this process) on the same scripted model server (a thread of this
process). llama-mesh: `llama-mesh serve nats | control-plane | gateway | service`, the
built-in agent service in one replica (bench/mesh_agents_api.py). llama-stack: its
server in its own venv, bench/.venvs/llama_stack (created on first run from
bench/llama_stack/requirements.lock.txt; never a project dependency), with
bench/llama_stack/run.yaml.

Legs: a plain streamed turn (p50/p99, and the first text delta: from the request, and
from the model writing its first chunk); a client-tool turn including its resume; 16
concurrent sessions (turns/s, CPU per turn summed over the server's processes and per
process); turn latency at the start and at the end of one long session; Responses
create p50 and a chain of 10 with previous_response_id. And once, before either
system, the floor (bench/agents_api_floor.py): the same agent turn in a process of its
own with no mesh, printed beside the targets it bounds. `--legs` runs some of them
(`--only mesh --legs concurrent --concurrent-turns 60` is ~20 s of steady turns, long
enough to profile the processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
from agents_api_floor import beside_targets, floor
from llama_stack_client import AsyncLlamaStackClient
from procs import Procs, cpu_seconds, free_port, wait_until
from stats import summary

from llama_mesh.testing import RecordedRequest, Reply, ScriptedModel, ToolCall

BENCH = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "llama_mesh"]
LS_DIR = BENCH / "llama_stack"
LS_VENV = BENCH / ".venvs" / "llama_stack"
LS_PY = LS_VENV / "bin" / "python"
TOOL = {
    "name": "lookup_capital",
    "description": "Look up the capital of a country.",
    "parameters": [
        {"name": "country", "parameter_type": "string", "description": "", "required": True}
    ],
}
PLAIN = {"model": "scripted", "instructions": "You are terse."}
WITH_TOOL = {**PLAIN, "client_tools": [TOOL]}
LEGS = ["floor", "plain", "client_tool", "concurrent", "long_session", "responses"]
SYSTEM_LEGS = LEGS[1:]  # the floor runs once, without either system


def respond(request: RecordedRequest) -> Reply:
    """A short streamed answer; a client tool call when asked for a capital."""
    last = request.messages[-1]
    if last["role"] == "tool":
        return Reply("It is Paris.", chunks=["It is ", "Paris."])
    text = str(last.get("content") or "")
    if "capital" in text and request.body.get("tools"):
        return Reply(tool_calls=[ToolCall("lookup_capital", {"country": "France"})])
    # interval > 0 makes the server record when it wrote each chunk (first-delta leg)
    return Reply("Hello there, friend.", chunks=["Hello ", "there, ", "friend."], interval=1e-4)


def ms(ns: float) -> float:
    return round(ns / 1e6, 3)


# ------------------------------------------------------------------ the systems


@asynccontextmanager
async def mesh(
    procs: Procs, tmp: Path, model_url: str
) -> AsyncIterator[tuple[str, dict[str, int]]]:
    nats = await procs.start("nats", [*CLI, "serve", "nats", "--data-dir", str(tmp / "nats")])
    cp = await procs.start(
        "control-plane",
        [*CLI, "serve", "control-plane", "--nats", nats.ready["url"], "--port", "0"],
    )
    address = str(cp.ready["address"])
    gateway, service = await asyncio.gather(
        procs.start("gateway", [*CLI, "serve", "gateway", "--upstream", address, "--port", "0"]),
        procs.start(
            "service-agents",
            [
                *CLI,
                "serve",
                "service",
                "mesh_agents_api:agents",
                "--name",
                "agents",
                "--control-plane",
                address,
                "--path",
                str(BENCH),
            ],
            env={"SCRIPTED_MODEL_URL": model_url},
            ready_timeout=180,
        ),
    )
    pids = {
        "nats-server": int(nats.ready["pid"]),
        "nats launcher": nats.pid,
        "control plane": cp.pid,
        "gateway": gateway.pid,
        "replica": service.pid,
    }
    yield str(gateway.ready["url"]), pids


def ensure_llama_stack() -> None:
    if LS_PY.exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(LS_VENV)], check=True, timeout=300)
    subprocess.run(
        [str(LS_PY), "-m", "pip", "install", "-q", "-r", str(LS_DIR / "requirements.lock.txt")],
        check=True,
        timeout=1800,
    )


@asynccontextmanager
async def llama_stack(
    procs: Procs, tmp: Path, model_url: str
) -> AsyncIterator[tuple[str, dict[str, int]]]:
    await asyncio.to_thread(ensure_llama_stack)
    port = free_port()
    server = await procs.start(
        "llama-stack",
        [
            str(LS_PY),
            "-m",
            "llama_stack.distribution.server.server",
            "--config",
            str(LS_DIR / "run.yaml"),
            "--port",
            str(port),
        ],
        env={"SCRIPTED_URL": model_url, "LS_STATE_DIR": str(tmp / "ls"), "LS_HOST": "127.0.0.1"},
        ready_line=False,
    )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as http:

        async def up() -> bool:
            try:
                return (await http.get(f"{url}/v1/health")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(up, timeout=300)
    yield url, {"server": server.pid}


# ------------------------------------------------------------------ the legs


async def streamed_turn(
    client: AsyncLlamaStackClient, agent_id: str, session_id: str, model: ScriptedModel
) -> tuple[int, int, float | None]:
    """(total ns, first text delta ns, model chunk written -> client delta ns)."""
    before = len(model.requests)
    start = time.perf_counter_ns()
    first = 0
    first_at = 0.0
    stream = await client.agents.turn.create(
        agent_id=agent_id,
        session_id=session_id,
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
    )
    async for chunk in stream:
        payload = chunk.event.payload if chunk.event is not None else None
        if payload is None:
            raise RuntimeError(f"an error in the stream: {chunk}")
        text = payload.event_type == "step_progress" and payload.delta.type == "text"
        if not first and text and payload.delta.text:
            first = time.perf_counter_ns() - start
            first_at = time.perf_counter()
    total = time.perf_counter_ns() - start
    sent = model.requests[before].chunk_times if len(model.requests) > before else []
    return total, first, (first_at - sent[0]) * 1e9 if sent else None


async def plain_turns(
    client: AsyncLlamaStackClient, model: ScriptedModel, runs: int
) -> dict[str, Any]:
    agent_id = (await client.agents.create(agent_config=PLAIN)).agent_id
    totals, firsts, after_model = [], [], []
    for i in range(runs + 3):
        session_id = (await client.agents.session.create(agent_id, session_name=f"p{i}")).session_id
        total, first, lag = await streamed_turn(client, agent_id, session_id, model)
        if i >= 3:  # warm-up
            totals.append(total)
            firsts.append(first)
            if lag is not None:
                after_model.append(int(lag))
    return {
        "turn": summary(totals),
        "first_delta": summary(firsts),
        "first_delta_after_model_chunk": summary(after_model),
    }


async def tool_turns(client: AsyncLlamaStackClient, runs: int) -> dict[str, Any]:
    agent_id = (await client.agents.create(agent_config=WITH_TOOL)).agent_id
    samples = []
    for i in range(runs + 2):
        session_id = (await client.agents.session.create(agent_id, session_name=f"t{i}")).session_id
        start = time.perf_counter_ns()
        stream = await client.agents.turn.create(
            agent_id=agent_id,
            session_id=session_id,
            messages=[{"role": "user", "content": "the capital of France?"}],
            stream=True,
        )
        chunks = [c async for c in stream]
        last = chunks[-1].event.payload
        if last.event_type != "turn_awaiting_input":
            raise RuntimeError(f"the turn did not wait for the tool: {last.event_type}")
        call = last.turn.output_message.tool_calls[0]
        resumed = await client.agents.turn.resume(
            last.turn.turn_id,
            agent_id=agent_id,
            session_id=session_id,
            tool_responses=[
                {"call_id": call.call_id, "tool_name": call.tool_name, "content": "Paris"}
            ],
            stream=True,
        )
        after = [c async for c in resumed]
        if after[-1].event.payload.event_type != "turn_complete":
            raise RuntimeError("the resumed turn did not complete")
        if i >= 2:
            samples.append(time.perf_counter_ns() - start)
    return summary(samples)


async def concurrent(
    client: AsyncLlamaStackClient,
    model: ScriptedModel,
    pids: dict[str, int],
    sessions: int,
    turns: int,
) -> dict[str, Any]:
    agent_id = (await client.agents.create(agent_config=PLAIN)).agent_id
    ids = [
        (await client.agents.session.create(agent_id, session_name=f"c{i}")).session_id
        for i in range(sessions)
    ]

    async def worker(session_id: str) -> None:
        for _ in range(turns):
            await streamed_turn(client, agent_id, session_id, model)

    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in ids))
    elapsed = time.perf_counter() - start
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    done = sessions * turns
    return {
        "sessions": sessions,
        "turns": done,
        "turns_per_s": round(done / elapsed, 2),
        "cpu_ms_per_turn": round(sum(cpu.values()) / done * 1000, 2),
        "cpu_ms_per_turn_by_process": {
            name: round(seconds / done * 1000, 2) for name, seconds in cpu.items()
        },
    }


async def long_session(
    client: AsyncLlamaStackClient, model: ScriptedModel, turns: int
) -> dict[str, Any]:
    agent_id = (await client.agents.create(agent_config=PLAIN)).agent_id
    session_id = (await client.agents.session.create(agent_id, session_name="long")).session_id
    samples = [(await streamed_turn(client, agent_id, session_id, model))[0] for _ in range(turns)]
    head, tail = samples[1:11], samples[-10:]
    first, last = statistics.median(head), statistics.median(tail)
    return {
        "turns": turns,
        "first_turns_p50_ms": ms(first),
        "last_turns_p50_ms": ms(last),
        "last_over_first": round(last / first, 2),
    }


async def responses(oai: openai.AsyncOpenAI, runs: int) -> dict[str, Any]:
    samples = []
    for _ in range(runs + 3):
        start = time.perf_counter_ns()
        await oai.responses.create(model="scripted", input="hello")
        samples.append(time.perf_counter_ns() - start)
    chains = []
    for _ in range(max(3, runs // 10)):
        start = time.perf_counter_ns()
        previous = None
        for i in range(10):
            made = await oai.responses.create(
                model="scripted", input=f"turn {i}", previous_response_id=previous
            )
            previous = made.id
        chains.append(time.perf_counter_ns() - start)
    return {"create": summary(samples[3:]), "chain_of_10": summary(chains)}


async def measure(
    name: str, url: str, pids: dict[str, int], model: ScriptedModel, args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {"system": name}
    async with (
        httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as http,
        AsyncLlamaStackClient(base_url=url, http_client=http, max_retries=0) as client,
        openai.AsyncOpenAI(
            base_url=f"{url}/v1/openai/v1", api_key="none", http_client=http, max_retries=0
        ) as oai,
    ):
        legs = {
            "plain": lambda: plain_turns(client, model, args.runs),
            "client_tool": lambda: tool_turns(client, max(5, args.runs // 2)),
            "concurrent": lambda: concurrent(client, model, pids, 16, args.concurrent_turns),
            "long_session": lambda: long_session(client, model, args.long_turns),
            "responses": lambda: responses(oai, args.runs),
        }
        for leg, run_leg in legs.items():
            if not args.legs or leg in args.legs:
                out[leg] = await run_leg()
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    model = ScriptedModel()
    model.respond_with(respond)
    results: dict[str, Any] = {"load_average_start": round(os.getloadavg()[0], 2)}
    with model.serve_in_thread() as model_url, tempfile.TemporaryDirectory() as tmp:
        if not args.legs or "floor" in args.legs:
            results["floor"] = await floor(model, model_url, args.runs)
            print(json.dumps({"floor": results["floor"]}, indent=1), flush=True)
        systems = {"mesh": mesh, "llama-stack": llama_stack}
        for name, system in systems.items():
            if (args.only and args.only != name) or args.legs == ["floor"]:
                continue
            procs = Procs(BENCH / "results" / "logs" / "agents_api" / name)
            try:
                async with system(procs, Path(tmp), model_url) as (url, pids):
                    results[name] = await measure(name, url, pids, model, args)
            finally:
                await procs.stop_all()
            print(json.dumps({name: results[name]}, indent=1), flush=True)
    results["load_average_end"] = round(os.getloadavg()[0], 2)
    return results


def report(results: dict[str, Any]) -> None:
    mesh_r, ls_r = results.get("mesh"), results.get("llama-stack")
    if mesh_r and "concurrent" in mesh_r:
        print("llama-mesh CPU ms per turn (16 sessions), by process:")
        for name, cpu_ms in mesh_r["concurrent"]["cpu_ms_per_turn_by_process"].items():
            print(f"  {name:40} {cpu_ms:>12}")
    if "floor" in results:
        for line in beside_targets(results["floor"], mesh_r, ls_r):
            print(line)
    if not (mesh_r and ls_r) or any(leg not in r for leg in SYSTEM_LEGS for r in (mesh_r, ls_r)):
        return
    rows = [
        ("plain turn p50 ms", mesh_r["plain"]["turn"]["p50_ms"], ls_r["plain"]["turn"]["p50_ms"]),
        ("plain turn p99 ms", mesh_r["plain"]["turn"]["p99_ms"], ls_r["plain"]["turn"]["p99_ms"]),
        (
            "first delta p50 ms",
            mesh_r["plain"]["first_delta"]["p50_ms"],
            ls_r["plain"]["first_delta"]["p50_ms"],
        ),
        (
            "first delta after model chunk p50 ms",
            mesh_r["plain"]["first_delta_after_model_chunk"]["p50_ms"],
            ls_r["plain"]["first_delta_after_model_chunk"]["p50_ms"],
        ),
        (
            "client-tool turn + resume p50 ms",
            mesh_r["client_tool"]["p50_ms"],
            ls_r["client_tool"]["p50_ms"],
        ),
        (
            "16 sessions turns/s",
            mesh_r["concurrent"]["turns_per_s"],
            ls_r["concurrent"]["turns_per_s"],
        ),
        (
            "CPU ms per turn",
            mesh_r["concurrent"]["cpu_ms_per_turn"],
            ls_r["concurrent"]["cpu_ms_per_turn"],
        ),
        (
            "long session last/first",
            mesh_r["long_session"]["last_over_first"],
            ls_r["long_session"]["last_over_first"],
        ),
        (
            "responses create p50 ms",
            mesh_r["responses"]["create"]["p50_ms"],
            ls_r["responses"]["create"]["p50_ms"],
        ),
        (
            "responses chain of 10 p50 ms",
            mesh_r["responses"]["chain_of_10"]["p50_ms"],
            ls_r["responses"]["chain_of_10"]["p50_ms"],
        ),
    ]
    print(f"{'':42} {'llama-mesh':>12} {'llama-stack':>12}")
    for label, a, b in rows:
        print(f"{label:42} {a!s:>12} {b!s:>12}")
    targets = {
        "plain-turn p50 <= 1/10 of the reference's": mesh_r["plain"]["turn"]["p50_ms"]
        <= ls_r["plain"]["turn"]["p50_ms"] / 10,
        "first delta <= 5 ms after the model sends it": mesh_r["plain"][
            "first_delta_after_model_chunk"
        ]["p50_ms"]
        <= 5,
        ">= 5x its turns/s": mesh_r["concurrent"]["turns_per_s"]
        >= 5 * ls_r["concurrent"]["turns_per_s"],
        "turn cost flat with session length (last/first <= 1.2)": mesh_r["long_session"][
            "last_over_first"
        ]
        <= 1.2,
    }
    results["targets"] = targets
    for label, met in targets.items():
        print(f"{'met   ' if met else 'MISSED'} {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["mesh", "llama-stack"])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--concurrent-turns", type=int, default=10)
    parser.add_argument("--long-turns", type=int, default=200)
    parser.add_argument(
        "--legs",
        nargs="+",
        choices=LEGS,
        help="run only these legs (the side-by-side table needs all of them)",
    )
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    if args.quick:
        args.runs, args.concurrent_turns, args.long_turns = 20, 4, 60
    results = asyncio.run(run(args))
    report(results)
    out = BENCH / "results" / "agents_api.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
