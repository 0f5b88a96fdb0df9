"""What the store costs as history grows: listings, and the store with retention on.

    .venv/bin/python bench/store_bench.py            # make bench-store
    .venv/bin/python bench/store_bench.py --quick    # smaller sizes, for a smoke run

Two legs, each on its own embedded nats-server (temporary data directory):

- **list**: ListTasks and ListSessions latency with 1k, 100k and 1M task records in the
  store. The records are written the way CreateTask writes them (a creation-index
  message and a Task record per task, 100 tasks per session, 20 of them waiting for
  input) but straight into JetStream, since running a million workflows would
  measure something else. At each size: p50/p95 of ListTasks over all sessions (first
  page and a page deep in the history), of one session, of the inbox
  (WAITING_FOR_INPUT), and of ListSessions. Flat means the page costs the same.
- **sessions**: ListSessions with 1k, 10k and 100k sessions, created the way
  CreateSession creates them (in-process, 64 at a time); p50/p95 of the first page
  (50) for everyone and for a caller confined to a namespace that holds 10 of them.
- **agent_sessions**: ListAgentSessions (AgentSessions.of_agent) of an agent with 10
  sessions among 1k and 10k sessions of other agents or none; p50/p95.
- **retention**: 100k echo tasks through a real mesh (control plane and one replica,
  c=64), with finished tasks kept 10 s and idle sessions 20 s. At 10k, 50k and 100k
  tasks (--checkpoints): the JetStream store's size (bytes on disk, what the server
  accounts), nats-server's RSS, what its monitoring says each stream holds (messages,
  subjects, interior deletes) and its Go runtime's memory counters (live heap, heap
  kept from the OS); --profiles saves a heap profile at each. Flat means nothing grows
  with history.

Results go to bench/results/store.json. Every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
from google.protobuf import struct_pb2

from llama_mesh.client import AsyncClient
from llama_mesh.config import RetentionConfig, ServiceConfig
from llama_mesh.control_plane.agents_api.agents import Agents
from llama_mesh.control_plane.agents_api.sessions import AgentSessions
from llama_mesh.control_plane.registry import ServiceRegistry
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.control_plane.sessions import Sessions
from llama_mesh.core import proto_time
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.topology import Topology
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.rpc.identity import Identity, set_caller
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.runtime import ServiceRuntime

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from procs import cpu_seconds, free_port, memory_kib  # noqa: E402

from mesh_workflows import EchoWorkflow  # noqa: E402

TASKS_PER_SESSION = 100
WAITING = 20
"""Tasks waiting for input, whatever the history (the inbox reads only those)."""


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
    }


async def _timed(call: Any, request: Any, runs: int) -> tuple[dict[str, float], Any]:
    samples = []
    response = None
    for _ in range(runs):
        started = time.perf_counter()
        response = await call(request)
        samples.append(time.perf_counter() - started)
    return _ms(samples), response


async def _seed(js: Any, topology: Topology, start: int, count: int) -> None:
    """Write `count` task records (and their index entries) as CreateTask would."""
    stamp = proto_time.now()
    pending: list[Any] = []
    for i in range(start, start + count):
        session_id = f"s{i // TASKS_PER_SESSION:07d}"
        task_id = f"t{i:09d}"
        if i % TASKS_PER_SESSION == 0:
            session = resources_pb2.Session(name=f"sessions/{session_id}")
            session.create_time.CopyFrom(stamp)
            # Its entry in the session index first, as CreateSession writes it.
            entry = json.dumps({"s": session_id, "e": 0}, separators=(",", ":")).encode()
            pending.append(await js.publish_async(topology.session_subject(""), entry))
            pending.append(
                await js.publish_async(
                    f"$KV.{topology.bucket('sessions')}.{session_id}", session.SerializeToString()
                )
            )
        entry = json.dumps({"t": task_id, "s": "echo"}, separators=(",", ":")).encode()
        ack = js.publish_async(
            topology.created_subject(session_id), entry, headers={"Nats-Msg-Id": task_id}
        )
        pending.append(await ack)
        waiting = i < WAITING
        task = resources_pb2.Task(
            name=f"sessions/{session_id}/tasks/{task_id}",
            service="echo",
            state=resources_pb2.TASK_STATE_WAITING_FOR_INPUT
            if waiting
            else resources_pb2.TASK_STATE_SUCCEEDED,
            attempt_count=1,
            result=None if waiting else struct_pb2.Value(string_value=f"{i}_result"),
        )
        task.create_time.CopyFrom(stamp)
        pending.append(
            await js.publish_async(
                f"$KV.{topology.bucket('tasks')}.{session_id}.{task_id}", task.SerializeToString()
            )
        )
        if waiting:
            listed = json.dumps({"c": 0, "s": "echo"}).encode()
            pending.append(
                await js.publish_async(
                    f"$KV.{topology.bucket('waiting')}.{session_id}.{task_id}", listed
                )
            )
        if len(pending) > 4000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def list_leg(sizes: list[int], runs: int) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedNats.start(Path(tmp) / "nats") as server:
            topology = Topology()
            async with ControlPlaneServer.start([server.url]) as cp_server:
                nc = await nats.connect(server.url)
                js = nc.jetstream(timeout=30)
                async with AsyncClient(cp_server.address, timeout=60) as client:
                    seeded = 0
                    for size in sizes:
                        started = time.perf_counter()
                        await _seed(js, topology, seeded, size - seeded)
                        seeded = size
                        seeding = time.perf_counter() - started
                        stub = client.stub
                        everyone = cp.ListTasksRequest(parent="sessions/-", page_size=50)
                        first, page = await _timed(stub.ListTasks, everyone, runs)
                        deep = cp.ListTasksRequest(
                            parent="sessions/-", page_size=50, page_token=page.next_page_token
                        )
                        for _ in range(10):  # ten pages into the history
                            deep.page_token = (await stub.ListTasks(deep)).next_page_token
                        deeper, _ = await _timed(stub.ListTasks, deep, runs)
                        one = cp.ListTasksRequest(parent="sessions/s0000000", page_size=50)
                        session, _ = await _timed(stub.ListTasks, one, runs)
                        inbox = cp.ListTasksRequest(
                            parent="sessions/-",
                            page_size=50,
                            states=[resources_pb2.TASK_STATE_WAITING_FOR_INPUT],
                        )
                        waiting, _ = await _timed(stub.ListTasks, inbox, runs)
                        sessions, _ = await _timed(
                            stub.ListSessions, cp.ListSessionsRequest(page_size=50), runs
                        )
                        row = {
                            "task_records": size,
                            "seed_s": round(seeding, 1),
                            "list_all_first_page": first,
                            "list_all_page_10": deeper,
                            "list_one_session": session,
                            "list_inbox": waiting,
                            "list_sessions": sessions,
                        }
                        print(json.dumps(row), flush=True)
                        results.append(row)
                await nc.close()
    return results


async def _create_sessions(sessions: Sessions, start: int, count: int) -> None:
    async def create(i: int) -> None:
        request = cp.CreateSessionRequest(session_id=f"b{i:07d}")
        await sessions.create_session(request)

    for first in range(start, start + count, 64):
        await asyncio.gather(*(create(i) for i in range(first, min(first + 64, start + count))))


async def sessions_leg(sizes: list[int], runs: int) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            EmbeddedNats.start(Path(tmp) / "nats") as server,
            MeshState.connect([server.url]) as state,
        ):
            sessions = Sessions(state, RetentionConfig())
            team = Identity.of("bench team", ["client"], "bench-team")
            token = set_caller(team)
            for i in range(10):
                await sessions.create_session(cp.CreateSessionRequest(session_id=f"team{i}"))
            token.var.reset(token)
            created = 0
            first_page = cp.ListSessionsRequest(page_size=50)
            for size in sizes:
                started = time.perf_counter()
                await _create_sessions(sessions, created, size - created)
                created = size
                seeding = time.perf_counter() - started
                everyone, page = await _timed(sessions.list_sessions, first_page, runs)
                assert len(page.sessions) == 50
                token = set_caller(team)
                confined, page = await _timed(sessions.list_sessions, first_page, runs)
                token.var.reset(token)
                row = {
                    "sessions": size,
                    "seed_s": round(seeding, 1),
                    "list_sessions_first_page": everyone,
                    "list_sessions_one_namespace": confined,
                    "one_namespace_listed": len(page.sessions),
                }
                print(json.dumps(row), flush=True)
                results.append(row)
    return results


AGENT_SESSIONS = 10
"""Sessions of the agent whose listing is timed, whatever the number of others."""


async def agent_sessions_leg(sizes: list[int], runs: int) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            EmbeddedNats.start(Path(tmp) / "nats") as server,
            MeshState.connect([server.url]) as state,
        ):
            sessions = Sessions(state, RetentionConfig())
            agents = AgentSessions(state, Agents(state, ServiceRegistry(state)), sessions)

            async def create(i: int) -> None:
                # The first few are the timed agent's; the others another agent's or none's.
                agent = "timed" if i < AGENT_SESSIONS else ("other" if i % 2 else "")
                session = resources_pb2.Session(labels={"agent_id": agent} if agent else {})
                request = cp.CreateSessionRequest(session_id=f"a{i:07d}", session=session)
                await sessions.create_session(request)

            created = 0
            for size in sizes:
                started = time.perf_counter()
                for first in range(created, size, 64):
                    await asyncio.gather(*(create(i) for i in range(first, min(first + 64, size))))
                created = size
                seeding = time.perf_counter() - started
                listed, found = await _timed(agents.of_agent, "timed", runs)
                assert len(found) == AGENT_SESSIONS
                row = {
                    "sessions": size,
                    "seed_s": round(seeding, 1),
                    "load_average": os.getloadavg()[0],
                    "list_agent_sessions": listed,
                }
                print(json.dumps(row), flush=True)
                results.append(row)
    return results


def _store_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


async def _run_tasks(client: AsyncClient, first: int, last: int, concurrency: int) -> None:
    """Tasks first..last-1, `concurrency` at a time; a session per hundred tasks, so that
    sessions come and go as well."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(first, last):
        queue.put_nowait(i)

    async def worker() -> None:
        session = None
        while not queue.empty():
            i = queue.get_nowait()
            if session is None or i % 100 == 0:
                session = await client.create_session()
            await session.run("echo", arg1=i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _monitor(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as reply:
        return json.load(reply)


async def _server_state(port: int) -> dict[str, Any]:
    """What nats-server says it holds: its memory and, per stream, what keeps state
    (messages, subjects, interior deletes, consumers)."""
    varz = await asyncio.to_thread(_monitor, port, "/varz")
    jsz = await asyncio.to_thread(_monitor, port, "/jsz?streams=true")
    streams = {}
    for account in jsz.get("account_details", []):
        for stream in account.get("stream_detail", []):
            state = stream["state"]
            streams[stream["name"]] = {
                "messages": state.get("messages", 0),
                "bytes": state.get("bytes", 0),
                "num_subjects": state.get("num_subjects", 0),
                "num_deleted": state.get("num_deleted", 0),
                "consumers": state.get("consumer_count", 0),
            }
    return {"varz_mem": varz["mem"], "streams": streams}


GO_MEMSTATS = ("HeapAlloc", "HeapInuse", "HeapIdle", "HeapReleased", "Sys", "NumGC")


async def _go_memstats(port: int) -> dict[str, int]:
    """The Go runtime's memory counters of nats-server (from its heap profile's text
    form): how much of its RSS is live heap, and how much is heap kept from the OS."""

    def fetch() -> str:
        url = f"http://127.0.0.1:{port}/debug/pprof/heap?debug=1"
        with urllib.request.urlopen(url, timeout=60) as reply:
            return str(reply.read().decode())

    found = {}
    for line in (await asyncio.to_thread(fetch)).splitlines():
        key, _, value = line.removeprefix("# ").partition(" = ")
        if key in GO_MEMSTATS:
            found[key] = int(value.split()[0])
    return found


async def _heap_profile(port: int, out: Path) -> None:
    """nats-server's Go heap profile (read it with `go tool pprof -top FILE`)."""

    def fetch() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        url = f"http://127.0.0.1:{port}/debug/pprof/heap"
        with urllib.request.urlopen(url, timeout=60) as reply:
            out.write_bytes(reply.read())

    await asyncio.to_thread(fetch)


async def retention_leg(
    checkpoints: list[int], concurrency: int, profiles: Path | None, gomemlimit: str
) -> list[dict[str, Any]]:
    results = []
    retention = RetentionConfig(finished_task_ttl=10, idle_session_ttl=20)
    service = ServiceConfig("echo", max_concurrency=64)
    monitor, profiler = free_port(), free_port()
    args = ("--http_port", str(monitor), "--profile", str(profiler))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "nats"
        async with contextlib.AsyncExitStack() as stack:
            with _environment("GOMEMLIMIT", gomemlimit):
                server = await stack.enter_async_context(EmbeddedNats.start(data, extra_args=args))
            cp_server = await stack.enter_async_context(
                ControlPlaneServer.start([server.url], retention=retention)
            )
            await stack.enter_async_context(
                ServiceRuntime.start(EchoWorkflow(), service, cp_server.address)
            )
            client = await stack.enter_async_context(AsyncClient(cp_server.address, timeout=60))
            nc = await nats.connect(server.url)
            stack.push_async_callback(nc.close)
            js = nc.jetstream()
            done = 0
            started = time.perf_counter()
            for checkpoint in checkpoints:
                await _run_tasks(client, done, checkpoint, concurrency)
                done = checkpoint
                account = await js.account_info()
                row = {
                    "tasks": done,
                    "elapsed_s": round(time.perf_counter() - started, 1),
                    "load_average": os.getloadavg()[0],
                    "store_bytes_on_disk": _store_bytes(data),
                    "jetstream_storage_bytes": account.storage,
                    "nats_server_rss_kib": memory_kib(server.process.pid).get("VmRSS"),
                    "nats_server_cpu_s": round(cpu_seconds(server.process.pid), 1),
                    **await _server_state(monitor),
                    "go": await _go_memstats(profiler),
                }
                if profiles is not None:
                    await _heap_profile(profiler, profiles / f"heap-{done}.pprof")
                print(json.dumps(row), flush=True)
                results.append(row)
    return results


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """`name` set to `value` (unless empty) for what starts in the block."""
    before = os.environ.get(name)
    if value:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [1_000, 10_000] if args.quick else [1_000, 100_000, 1_000_000]
    checkpoints = [2_000, 4_000] if args.quick else [10_000, 50_000, 100_000]
    session_sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    out: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    legs = args.legs.split(",")
    if "list" in legs:
        out["list"] = await list_leg(sizes, runs=20 if args.quick else 50)
    if "sessions" in legs:
        out["sessions"] = await sessions_leg(session_sizes, runs=20 if args.quick else 50)
    if "agent_sessions" in legs:
        out["agent_sessions"] = await agent_sessions_leg(
            session_sizes[:2], runs=20 if args.quick else 50
        )
    if "retention" in legs:
        if args.checkpoints:
            checkpoints = [int(n) for n in args.checkpoints.split(",")]
        out["retention"] = await retention_leg(
            checkpoints,
            concurrency=args.concurrency,
            profiles=args.profiles,
            gomemlimit=args.gomemlimit,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "store.json")
    parser.add_argument(
        "--legs",
        default="list,sessions,agent_sessions,retention",
        help="which legs, comma-separated",
    )
    parser.add_argument(
        "--checkpoints", default="", help="retention: task counts, e.g. 25000,50000"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="retention: tasks at once")
    parser.add_argument(
        "--profiles", type=Path, default=None, help="retention: save heap profiles here"
    )
    parser.add_argument(
        "--gomemlimit",
        default="",
        help="retention: GOMEMLIMIT for nats-server (e.g. 64MiB, off; default: the mesh's)",
    )
    args = parser.parse_args()
    out = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
