"""The same deployment on a 3-node NATS JetStream cluster: `llama-mesh up` with NATS
URLs starts no nats-server of its own, streams and buckets get 3 replicas, and killing
a NATS node (the task stream's leader) loses no task. On a clustered stream too, a
task's final event is stored once (jetstream/journal.py)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest

from llama_mesh.client import AsyncClient
from llama_mesh.core.lifecycle import cancelled_event
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import TaskJournal
from llama_mesh.jetstream.topology import Topology
from llama_mesh.launch.nats_server import nats_server_binary

from .conftest import QUICKSTART, alive, cli, free_port, llama_mesh_up, write_deployment

TESTS = Path(__file__).resolve().parents[1]
_CLIENT_PORT = re.compile(rb"Listening for client connections on [0-9.]+:(\d+)")
_META_LEADER = re.compile(rb"JetStream cluster new metadata leader|Self is new JetStream cluster")


@dataclass
class Node:
    name: str
    process: asyncio.subprocess.Process
    url: str
    drain: asyncio.Task[None]


async def _start_node(name: str, config: Path) -> Node:
    process = await asyncio.create_subprocess_exec(
        str(nats_server_binary()),
        "-c",
        str(config),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    stderr = process.stderr
    url = ""
    try:
        async with asyncio.timeout(30):
            # Ready once it serves clients and knows the JetStream metadata leader.
            while True:
                line = await stderr.readline()
                assert line, f"nats-server {name} exited before the cluster formed"
                if match := _CLIENT_PORT.search(line):
                    url = f"nats://127.0.0.1:{int(match.group(1))}"
                if _META_LEADER.search(line):
                    break
    except BaseException:
        process.kill()
        await process.wait()
        raise

    async def drain() -> None:
        while await stderr.readline():
            pass

    return Node(name, process, url, asyncio.create_task(drain()))


@contextlib.asynccontextmanager
async def nats_cluster(tmp_path: Path) -> AsyncIterator[list[Node]]:
    """Three nats-server processes on loopback, routed to each other."""
    routes = [free_port() for _ in range(3)]
    configs = []
    for i, port in enumerate(routes, 1):
        config = tmp_path / f"n{i}.conf"
        config.write_text(
            f"server_name: n{i}\n"
            "listen: 127.0.0.1:-1\n"
            f'jetstream {{ store_dir: "{tmp_path / f"n{i}"}" }}\n'
            f"cluster {{ name: mesh, listen: 127.0.0.1:{port}, routes: ["
            + ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
            + "] }\n"
        )
        configs.append(config)
    starts = [asyncio.create_task(_start_node(f"n{i}", c)) for i, c in enumerate(configs, 1)]
    results = await asyncio.gather(*starts, return_exceptions=True)
    nodes = [r for r in results if isinstance(r, Node)]
    try:
        for r in results:
            if isinstance(r, BaseException):
                raise r
        yield nodes
    finally:
        for node in nodes:
            if node.process.returncode is None:
                node.process.terminate()
        for node in nodes:
            await node.process.wait()
            await node.drain


async def _stream_leader(urls: list[str], stream: str) -> str:
    nc = await nats.connect(servers=urls)
    try:
        info = await nc.jetstream().stream_info(stream)
        assert info.cluster is not None and info.cluster.leader
        assert info.config.num_replicas == 3
        return info.cluster.leader
    finally:
        await nc.close()


@pytest.mark.parametrize("victim", ["follower", "leader"])
async def test_two_replicas_on_a_three_node_cluster_survive_a_node_kill(
    tmp_path: Path, victim: str
) -> None:
    async with nats_cluster(tmp_path) as nodes:
        urls = [node.url for node in nodes]
        data = {
            "name": "clustered",
            "state_dir": str(tmp_path / "state"),
            "nats": {"url": urls, "replicas": 3},
            "control_plane": {"port": 0},
            "gateway": {"enabled": False},
            "services": {
                "echo": {"source": "quickstart:echo", "path": str(QUICKSTART), "replicas": 2},
                "slow": {
                    "source": "mesh_workflows:SlowWorkflow",
                    "path": str(TESTS),
                    "replicas": 2,
                    "ack_wait": 5,
                },
            },
        }
        file = write_deployment(tmp_path / "deployment.yaml", data)
        async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
            assert "nats" not in up.summary["pids"]  # no embedded server
            assert up.summary["nats"] == urls
            ran = await cli("run", "echo", "--arg", "arg1=one", "-o", "json", "-f", str(file))
            assert ran.code == 0, ran.stderr
            assert ran.json()["result"] == "one_result"

            leader = await _stream_leader(urls, "MESH_TASKS")
            async with AsyncClient(
                up.control_plane, reconnect_timeout=60, token=up.token
            ) as client:
                session = await client.create_session()
                handles = [
                    await session.create_task("slow", arg1=f"t{i}", seconds=1.0) for i in range(6)
                ]
                killed = next(
                    node for node in nodes if (node.name == leader) == (victim == "leader")
                )
                killed.process.send_signal(signal.SIGKILL)
                await killed.process.wait()

                async with asyncio.timeout(60):
                    results = await asyncio.gather(*(h.result() for h in handles))
                assert results == [f"t{i}_slow" for i in range(6)]

                after = await cli("run", "echo", "--arg", "arg1=two", "-o", "json", "-f", str(file))
                assert after.code == 0, after.stderr
                assert after.json()["result"] == "two_result"
            pids = up.pids
            assert await up.stop() == 0
        assert not [pid for pid in pids if alive(pid)]


async def test_final_events_published_at_once_on_a_cluster_are_stored_once(
    tmp_path: Path,
) -> None:
    # Finishers of one task publishing its end at the same moment, each under its own id
    # (as past the duplicate window). A clustered stream also refuses a final event while
    # another is in flight, not yet stored: the refused finisher publishes again until
    # the store has decided, and every finisher gets the one stored event's sequence.
    async with (
        nats_cluster(tmp_path) as nodes,
        MeshState.connect([node.url for node in nodes], Topology(replicas=3)) as state,
    ):
        journal = state.journal
        assert isinstance(journal, TaskJournal)
        names = [TaskName(session_id="s", task_id=f"t{i}") for i in range(40)]
        for name in names:
            sequences = await asyncio.gather(
                *(
                    journal.publish(
                        name, cancelled_event(0, "done"), event_id=f"{name.task_id}.{k}"
                    )
                    for k in range(3)
                )
            )
            assert len(set(sequences)) == 1, sequences
        info = await state.js.stream_info(state.topology.event_stream)
        assert info.state.messages == len(names)
