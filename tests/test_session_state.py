"""A run's effect on its session takes place exactly once, in creation order, under
at-least-once delivery (issue 12, items 1, 2 and 3; DESIGN.md "Session state takes
effect exactly once").

Replicas that crash or stop do so at the exact point, through failpoints
(core/failpoints.py): `exit` ends the process there as SIGKILL would, `stop` stops it
with SIGSTOP until the test continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fault_workflows import RUNS, AppendWorkflow

from llama_mesh.client import AsyncClient
from llama_mesh.config import ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.failpoints import ENV, armed, crash
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream import task_index
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.session_turn import Held, SessionTurns, Superseded
from llama_mesh.launch.child_pipes import read_ready_line
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2

TESTS = Path(__file__).resolve().parent
CLI = Path(sys.executable).parent / "llama-mesh"


class Replica:
    """A `llama-mesh serve service` process whose stderr the test reads."""

    def __init__(self, process: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.process = process
        self.ready = ready

    async def reached(self, failpoint: str) -> None:
        """Wait until the process says it reached `failpoint`."""
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            if line.decode(errors="replace").strip() == f"failpoint {failpoint}":
                return
        raise AssertionError(f"the replica ended before failpoint {failpoint}")


@contextlib.asynccontextmanager
async def replica(
    control_plane: str, source: str, name: str, *, failpoints: str = ""
) -> AsyncIterator[Replica]:
    env = {**os.environ, "PYTHONPATH": str(TESTS), ENV: failpoints}
    process = await asyncio.create_subprocess_exec(
        str(CLI),
        "serve",
        "service",
        source,
        "--name",
        name,
        "--control-plane",
        control_plane,
        "--ack-wait",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            ready = await read_ready_line(process.stdout)
        assert ready is not None, "the replica exited before it was ready"
        yield Replica(process, ready)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
            await process.wait()


@pytest.mark.timeout(180)
async def test_a_replica_that_dies_after_committing_does_not_apply_the_run_twice(
    nats: EmbeddedNats,
) -> None:
    async with (
        ControlPlaneServer.start([nats.url]) as cp_server,
        AsyncClient(cp_server.address) as client,
    ):
        session = await client.create_session()
        source = "mesh_workflows:CounterWorkflow"
        async with replica(
            cp_server.address, source, "counter", failpoints="attempt.committed=exit"
        ) as first:
            handle = await session.create_task("counter")
            await first.reached("attempt.committed")  # the Context is saved, then it dies
            assert await first.process.wait() == 137
        async with replica(cp_server.address, source, "counter"):
            # Delivered again: it finds its own outcome committed and records that.
            assert await handle.result() == 1
            assert [await session.run("counter") for _ in range(3)] == [2, 3, 4]
        task = await handle.get()
        assert task.attempt_count == 1  # the redelivery ran nothing


@pytest.mark.timeout(180)
async def test_a_stopped_replica_resumed_after_redelivery_cannot_overwrite_newer_state(
    nats: EmbeddedNats,
) -> None:
    async with (
        ControlPlaneServer.start([nats.url]) as cp_server,
        AsyncClient(cp_server.address) as client,
    ):
        session = await client.create_session()
        source = "mesh_workflows:CounterWorkflow"
        async with replica(
            cp_server.address, source, "counter", failpoints="attempt.ran=stop"
        ) as stale:
            handle = await session.create_task("counter")
            # It ran the workflow on count 0 and is stopped before it commits count 1.
            await stale.reached("attempt.ran")
            async with replica(cp_server.address, source, "counter"):
                # Past the ack wait the task goes to the live replica; more runs follow.
                assert await handle.result() == 1
                assert [await session.run("counter") for _ in range(2)] == [2, 3]
                # The stale one resumes and tries to commit its count of 1 over 3.
                os.kill(stale.process.pid, signal.SIGCONT)
                assert await session.run("counter") == 4
                assert await session.run("counter") == 5
            task = await handle.get()
            assert task.attempt_count == 2


@pytest.mark.timeout(180)
async def test_tasks_run_in_creation_order_and_list_newest_first(nats: EmbeddedNats) -> None:
    # Two slots: the later tasks, delivered first while task 0 is handed back, wait
    # for it without holding the slots it needs.
    config = ServiceConfig("append", max_concurrency=2)
    async with LocalMesh({"append": (AppendWorkflow(), config)}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        first_attempts: list[bool] = []

        def fail_the_first_delivery() -> None:
            if not first_attempts:
                first_attempts.append(True)
                crash()

        RUNS.clear()
        with armed("attempt.began", fail_the_first_delivery):
            # The client sends a request_id, so ids are hashes: they do not sort.
            handles = [await session.create_task("append", item=i) for i in range(20)]
            results = [await h.result() for h in handles]
        assert results == [list(range(i + 1)) for i in range(20)]
        assert list(range(20)) == RUNS
        listed = [t.name for t in await session.list_tasks()]
        assert listed == [h.name for h in reversed(handles)]
        assert [t.name for t in await session.list_tasks(limit=5)] == listed[:5]
        newest = await mesh.client.list_tasks("-", limit=3)
        assert [t.name for t in newest] == listed[:3]


async def test_a_turn_taken_over_by_the_same_attempt_on_another_replica_stays_taken(
    nats: EmbeddedNats,
) -> None:
    # While a task waited for its turn, its consumer elected a new leader (a NATS node
    # died): its progress was lost and the task was delivered again to the other
    # replica, where it began with the same attempt number (RUNNING is recorded as the
    # turn is taken). Both took the turn, the second over the first. Before, the first,
    # its commit refused, gave back the turn it no longer held: the second's. The
    # second's commit was then refused too, neither recorded the run, and the task
    # waited out its ack wait to run a third time (seen in the 3-node cluster test).
    async with MeshState.connect([nats.url]) as state:
        name = TaskName("s1", "t1")
        sequence = await task_index.add(
            state.js, state.topology, name, "svc", child=False, ttl=3600
        )
        task = resources_pb2.Task(
            name=str(name), service="svc", state=resources_pb2.TASK_STATE_PENDING
        )
        await state.tasks.create(f"{name.session_id}.{name.task_id}", task)
        first, second = SessionTurns(state, "svc", "r1"), SessionTurns(state, "svc", "r2")
        held_first = await first.take(name, 1, sequence)
        held_second = await second.take(name, 1, sequence)  # the delivery that came again
        assert isinstance(held_first, Held) and isinstance(held_second, Held)
        with pytest.raises(Superseded):
            await first.commit(name, 1, held_first, {"by": "r1"}, "r1")
        await first.give_back(name, 1, held_first)  # as the attempt does when it stops
        assert await second.commit(name, 1, held_second, {"by": "r2"}, "r2") is None
        entry = await state.session_state.get(first.key(name))
        record = json.loads(entry.value or b"{}")
        assert record["turn"] is None
        assert (record["committed"]["result"], record["context"]) == ("r2", {"by": "r2"})
