"""The llama_deploy-style entry points run a real mesh."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from pathlib import Path

from llama_mesh.client import AsyncClient
from llama_mesh.launch.deploy import (
    ControlPlaneConfig,
    NatsQueueConfig,
    WorkflowServiceConfig,
    deploy_core,
    deploy_workflow,
)
from llama_mesh.worker.nested import add_workflows

from mesh_workflows import EchoWorkflow, InnerWorkflow, OuterWorkflow


def _free_port() -> int:
    # deploy_core takes a fixed port, as llama_deploy's did; ask the OS for a free one.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_deploy_core_and_deploy_workflow(tmp_path: Path) -> None:
    control_plane = ControlPlaneConfig(port=_free_port())
    queue = NatsQueueConfig(data_dir=tmp_path / "nats", port=-1)
    outer = OuterWorkflow()
    add_workflows(outer, inner=InnerWorkflow())
    started = [asyncio.Event() for _ in range(4)]
    async with asyncio.TaskGroup() as group:
        core = group.create_task(deploy_core(control_plane, queue, ready=started[0]))
        await started[0].wait()
        services = [
            group.create_task(
                deploy_workflow(wf, WorkflowServiceConfig(name), control_plane, ready=event)
            )
            for (name, wf), event in zip(
                [("my_workflow", EchoWorkflow()), ("inner", InnerWorkflow()), ("outer", outer)],
                started[1:],
                strict=True,
            )
        ]
        for event in started[1:]:
            await event.wait()
        try:
            async with AsyncClient(control_plane.url) as client:
                session = await client.create_session()
                assert await session.run("my_workflow", arg1="hello_world") == (
                    "hello_world_result"
                )
                assert await session.run("outer", arg1="hello_world") == (
                    "hello_world_result_result"
                )
        finally:
            for task in [*services, core]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


_CORE = """
import asyncio, sys
from llama_mesh.launch.deploy import ControlPlaneConfig, NatsQueueConfig, deploy_core
asyncio.run(deploy_core(ControlPlaneConfig(port=0), NatsQueueConfig(data_dir=sys.argv[1], port=-1)))
"""


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


async def test_deploy_core_as_a_script_says_when_it_is_ready_and_sigterm_leaves_no_nats_server(
    tmp_path: Path,
) -> None:
    # As llama_deploy's users run it: `python core.py`, data_dir a str, stopped by SIGTERM
    # (a container runtime, systemd): its nats-server must not outlive it.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CORE, str(tmp_path / "nats"), stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(90):
            line = ""
            while not line.startswith("llama-mesh:"):
                line = (await proc.stderr.readline()).decode()
                assert line, "deploy_core ended before it said it was ready"
        assert re.fullmatch(
            r"llama-mesh: control plane ready at 127\.0\.0\.1:\d+ "
            r"\(NATS nats://127\.0\.0\.1:\d+\); Ctrl-C stops it\n",
            line,
        ), line
        [nats_pid] = _children(proc.pid)
        assert os.readlink(f"/proc/{nats_pid}/exe").endswith("nats-server")
        pidfd = os.pidfd_open(nats_pid)
        try:
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == -signal.SIGTERM
            # Not our child, so no wait(): its pidfd turns readable when it has exited.
            gone = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_reader(pidfd, gone.set)
            try:
                async with asyncio.timeout(30):
                    await gone.wait()
            finally:
                loop.remove_reader(pidfd)
        finally:
            os.close(pidfd)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
