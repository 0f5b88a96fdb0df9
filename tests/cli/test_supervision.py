"""`up` supervises nats-server itself: its death is seen at once, it comes back on the
same data directory and port once the old one is gone, and the tasks in flight finish.
Restart limits are a rate. A replica that dies leaves the registry at once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from llama_mesh.client import AsyncClient, Credentials, TaskHandle
from llama_mesh.config.restarts import RestartConfig
from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.launch.nats_server import EmbeddedNats, NatsServerError
from llama_mesh.launch.supervisor import ChildSpec, Supervisor
from llama_mesh.v1 import resources_pb2

from .conftest import alive, cli, llama_mesh_up, quickstart, write_deployment


def _exe(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/exe")


async def _question(task: TaskHandle, after: int = 0) -> int:
    """The sequence of the next question `task` asks after the event `after`."""
    async for event in task.events(after_sequence=after):
        if event.type == "InputRequiredEvent":
            return event.sequence
    raise AssertionError(f"{task.name} ended without asking")


async def _answer(task: TaskHandle, question: int, response: str) -> None:
    """Answer the question the task waits on. NATS's restart can end the waiting
    attempt (its message is handed back and run again): the task then runs for a
    moment, asks again, and the answer goes to the new question."""
    while True:
        try:
            await task.send_event("HumanResponseEvent", response=response)
            return
        except FailedPreconditionError:
            question = await _question(task, question)


@pytest.mark.timeout(240)
async def test_nats_server_killed_under_up_comes_back_and_tasks_in_flight_finish(
    tmp_path: Path,
) -> None:
    data = quickstart(tmp_path, services=["echo", "approval"])
    data["gateway"]["enabled"] = False
    file = write_deployment(tmp_path / "deployment.yaml", data)
    async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
        first = int(up.summary["pids"]["nats"])
        assert _exe(first).endswith("nats-server")  # no wrapper between up and the server
        credentials = Credentials.from_env(up.env)
        async with AsyncClient(
            up.control_plane, reconnect_timeout=120, credentials=credentials
        ) as client:
            # One session each: the runs of one service in one session take turns.
            sessions = [await client.create_session() for _ in range(3)]
            waiting = [
                await s.create_task("approval", question=f"q{i}") for i, s in enumerate(sessions)
            ]
            asked = [await _question(task) for task in waiting]  # each replica waits
            states = {(await t.get()).state for t in waiting}
            assert states == {resources_pb2.TASK_STATE_WAITING_FOR_INPUT}

            os.kill(first, signal.SIGKILL)
            exited = await up.next_event("exited")
            assert (exited["child"], exited["pid"]) == ("nats", first)
            assert exited["code"] == -signal.SIGKILL
            restarted = await up.next_event("restarted")
            assert restarted["child"] == "nats" and restarted["pid"] != first
            assert not alive(first)
            assert _exe(restarted["pid"]).endswith("nats-server")

            for i, (task, question) in enumerate(zip(waiting, asked, strict=True)):
                await _answer(task, question, f"yes {i}")
            results = [await task.result() for task in waiting]
            assert results == [{"question": f"q{i}", "answer": f"yes {i}"} for i in range(3)]
            assert await sessions[0].run("echo", arg1="after") == "after_result"
        pids = [*up.pids, restarted["pid"]]
        assert await up.stop() == 0
    assert not [pid for pid in pids if alive(pid)]


async def test_up_refuses_a_data_directory_a_live_nats_server_uses(tmp_path: Path) -> None:
    data = quickstart(tmp_path, services=["echo"])
    data["gateway"]["enabled"] = False
    file = write_deployment(tmp_path / "deployment.yaml", data)
    # A nats-server left over on the deployment's data directory (e.g. by an `up` of
    # an older version whose wrapper was killed): a second one must not start on it.
    async with EmbeddedNats.start(tmp_path / "state" / "nats") as stray:
        ran = await cli("up", str(file), timeout=90)  # refused before it starts anything
        assert ran.code == 1, ran.stderr
        assert f"is in use by another nats-server (pid {stray.process.pid})" in ran.stderr
        assert stray.process.returncode is None


async def test_a_data_directory_takes_one_server_until_it_is_gone(tmp_path: Path) -> None:
    first = await EmbeddedNats.launch(tmp_path)
    try:
        with pytest.raises(NatsServerError, match=f"pid {first.process.pid}"):
            await EmbeddedNats.launch(tmp_path)
        first.process.kill()
        await first.process.wait()
        async with EmbeddedNats.start(tmp_path) as second:
            assert second.process.pid != first.process.pid
    finally:
        await first.stop()


_LAUNCHER = """
import asyncio, sys
from pathlib import Path
from llama_mesh.launch.nats_server import EmbeddedNats

async def main() -> None:
    nats = await EmbeddedNats.launch(Path(sys.argv[1]))
    print(nats.process.pid, flush=True)
    await asyncio.to_thread(sys.stdin.read)

asyncio.run(main())
"""


async def test_a_nats_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    launcher = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _LAUNCHER,
        str(tmp_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert launcher.stdout is not None
    server = int(await launcher.stdout.readline())
    assert _exe(server).endswith("nats-server")
    gone = asyncio.get_running_loop().create_future()
    pidfd = os.pidfd_open(server)  # readable once the server has exited
    asyncio.get_running_loop().add_reader(pidfd, gone.set_result, None)
    try:
        launcher.kill()  # SIGKILL: the launcher cleans up nothing
        await launcher.wait()
        await gone
    finally:
        asyncio.get_running_loop().remove_reader(pidfd)
        os.close(pidfd)
    async with EmbeddedNats.start(tmp_path):  # its data directory is free again
        pass


# ------------------------------------------------------------ the restart rate

_CHILD = [
    sys.executable,
    "-c",
    "import json, sys; print(json.dumps({'ready': True}), flush=True); sys.stdin.read()",
]


async def test_restart_limit_is_a_rate_not_a_lifetime_count() -> None:
    now = [0.0]
    events: list[tuple[str, int]] = []
    happened = asyncio.Queue[str]()

    def report(kind: str, child: object, fields: dict[str, object]) -> None:
        events.append((kind, int(fields.get("restarts", 0))))  # type: ignore[call-overload]
        happened.put_nowait(kind)

    async def next_event(kind: str) -> None:
        while await happened.get() != kind:
            pass

    supervisor = Supervisor(
        report=report, restarts=RestartConfig(max_restarts=2, window=60), clock=lambda: now[0]
    )
    try:
        [child] = await supervisor.start_stage([ChildSpec("c", _CHILD)])

        async def kill_and_wait(kind: str) -> None:
            child.process.kill()
            await next_event(kind)

        await kill_and_wait("restarted")  # 1 of 2 within the window
        now[0] = 30.0
        await kill_and_wait("restarted")  # 2 of 2
        now[0] = 61.0  # the first restart left the window: one more is allowed
        await kill_and_wait("restarted")
        now[0] = 70.0  # two restarts (at 30 and 61) within the last 60 s: no third
        await kill_and_wait("gave_up")
        assert [e for e in events if e[0] != "exited"] == [
            ("restarted", 1),
            ("restarted", 2),
            ("restarted", 2),
            ("gave_up", 2),
        ]
    finally:
        await supervisor.stop()


async def test_a_critical_child_that_keeps_dying_stops_the_deployment() -> None:
    supervisor = Supervisor(restarts=RestartConfig(max_restarts=0, window=60))
    try:
        [child] = await supervisor.start_stage([ChildSpec("c", _CHILD, critical=True)])
        child.process.kill()
        await supervisor.failed.wait()
        assert supervisor.failure == "c exited after 0 restart(s) within 60s"
    finally:
        await supervisor.stop()


def test_restart_flags_override_the_file(tmp_path: Path) -> None:
    from .conftest import parse_command

    _, params = parse_command(["up", "f.yaml", "--max-restarts", "5", "--restart-window", "10"])
    assert (params["max_restarts"], params["restart_window"]) == (5, 10.0)
    assert json.loads(RestartConfig(max_restarts=5, window=10).model_dump_json()) == {
        "max_restarts": 5,
        "window": 10.0,
    }
