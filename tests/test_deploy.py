"""The llama_deploy-style entry points run a real mesh."""

from __future__ import annotations

import asyncio
import contextlib
import socket
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
