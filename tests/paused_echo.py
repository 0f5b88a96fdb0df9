"""A mesh whose echo replicas take no task, and one echo task in it: for the tests that
play the replica themselves (they record the task's RUNNING, its events and its end as
a replica would). The `paused_echo` fixture (conftest.py) starts it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from llama_mesh.client import TaskHandle
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.launch.local import LocalMesh

from mesh_workflows import EchoWorkflow


@dataclass(frozen=True)
class PausedEcho:
    """The mesh, its control plane's NATS state, and the task (PENDING: no replica
    takes it)."""

    mesh: LocalMesh
    state: MeshState
    handle: TaskHandle
    name: TaskName


@contextlib.asynccontextmanager
async def paused_echo_mesh(nats_url: str) -> AsyncIterator[PausedEcho]:
    async with LocalMesh({"echo": EchoWorkflow()}, nats_url=nats_url) as mesh:
        for replica in mesh.services["echo"]:
            replica.pause()  # the test plays the replica
        assert mesh.control_plane is not None
        session = await mesh.client.create_session()
        handle = await session.create_task("echo", arg1="x")
        yield PausedEcho(mesh, mesh.control_plane.state, handle, TaskName.parse(handle.name))
