"""Finished tasks and idle sessions expire with their events and saved state; listings
read a page, not the history; replies are bounded in bytes (issue 12, item 8)."""

from __future__ import annotations

from typing import Any

import pytest

from llama_mesh.client import AsyncClient
from llama_mesh.config import RetentionConfig, ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.errors import NotFoundError
from llama_mesh.core.names import TaskName
from llama_mesh.core.paging import MAX_PAGE_BYTES
from llama_mesh.core.proto_time import duration, seconds
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.runtime import ServiceRuntime

from kv_markers import expired
from mesh_workflows import CounterWorkflow, EchoWorkflow


@pytest.mark.timeout(60)
async def test_finished_tasks_and_idle_sessions_expire(nats: EmbeddedNats) -> None:
    async with LocalMesh({"counter": CounterWorkflow()}, nats_url=nats.url) as mesh:
        client = mesh.client
        created = await client.call(
            client.stub.CreateSession,
            cp.CreateSessionRequest(
                session=resources_pb2.Session(ttl=duration(4), task_ttl=duration(1))
            ),
        )
        session = await client.get_session(created.session.name)
        handle = await session.create_task("counter")
        assert await handle.result() == 1
        task = await handle.get()
        assert seconds(task.ttl) == 1
        assert task.expire_time.ToNanoseconds() - task.end_time.ToNanoseconds() == 10**9
        name = TaskName.parse(task.name)

        await expired(nats.url, "mesh_tasks", f"{name.session_id}.{name.task_id}")
        with pytest.raises(NotFoundError):
            await client.get_task(task.name)
        assert await session.list_tasks() == []
        js = mesh.control_plane.state.js  # type: ignore[union-attr]
        events = await js.stream_info(
            "MESH_EVENTS", subjects_filter=f"mesh.events.{name.task_id}.>"
        )
        assert not events.state.subjects  # its events went with it

        # No task for its ttl: the session goes, with its saved workflow state.
        await expired(nats.url, "mesh_sessions", name.session_id)
        with pytest.raises(NotFoundError):
            await client.get_session(session.name)
        # Its saved workflow state expires as idle as the session (kept as long).
        await expired(nats.url, "mesh_session_state", f"{name.session_id}.counter")


async def test_the_deployment_gives_the_defaults(nats: EmbeddedNats) -> None:
    retention = RetentionConfig(finished_task_ttl=30, idle_session_ttl=600)
    async with (
        ControlPlaneServer.start([nats.url], retention=retention) as server,
        ServiceRuntime.start(EchoWorkflow(), ServiceConfig("echo"), server.address),
        AsyncClient(server.address) as client,
    ):
        session = await client.create_session()
        assert seconds(session.session.ttl) == 600
        assert seconds(session.session.task_ttl) == 30
        handle = await session.create_task("echo", arg1="x")
        await handle.result()
        assert seconds((await handle.get()).ttl) == 30


@pytest.mark.timeout(120)
async def test_a_page_of_large_tasks_is_cut_by_bytes_never_refused(nats: EmbeddedNats) -> None:
    # 20 tasks of 200 KiB in and 200 KiB out: 8 MB, over gRPC's 4 MiB message limit,
    # which a listing of them hit (RESOURCE_EXHAUSTED) before.
    async with LocalMesh({"echo": EchoWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        big = "x" * 200_000
        names = [(await session.create_task("echo", arg1=f"{i}{big}")).name for i in range(20)]
        for name in names:
            await mesh.client.task(name).result()
        first = await mesh.client.call(
            mesh.client.stub.ListTasks, cp.ListTasksRequest(parent=session.name, page_size=1000)
        )
        assert 0 < len(first.tasks) < 20 and first.next_page_token
        assert sum(t.ByteSize() for t in first.tasks) <= MAX_PAGE_BYTES
        listed: list[Any] = await session.list_tasks()
        assert [t.name for t in listed] == names[::-1]
