"""WaitTask and RunTask end although their task's last event never reached them.

A control plane wakes its waiting calls when a task's last event comes
(control_plane/waiters.py). It once came on a core NATS subscription, re-read only when
NATS reconnected: one lost without a reconnect left the call waiting until its deadline
(a day for the Python client's WaitTask; for ever for a RunTask with no deadline).

The loss here is real: nats.py drops what a subscription has no room for (a slow
consumer). The subscription is given room for one delivery and its callback is held on
a first task's last event (core/failpoints.py), so a second waits in its queue and the
last events of the waited tasks, stored after it, are dropped; no reconnect follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import nats as nats_client
import pytest
from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent

from llama_mesh.control_plane import waiters
from llama_mesh.core.failpoints import armed, holding
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2

from mesh_workflows import EchoWorkflow


class HeldUntil(Workflow):
    """Works until `release` is set."""

    def __init__(self, release: asyncio.Event) -> None:
        super().__init__()
        self.release = release

    @step
    async def work(self, ev: StartEvent) -> StopEvent:
        await self.release.wait()
        return StopEvent(result=f"{ev.get('item')} done")


class _Drops(logging.Handler):
    """Counts the deliveries of tasks' last events that nats.py dropped (it reports each
    to the connection's error callback, which logs it: jetstream/connection.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "slow consumer" in message and ".end" in message:
            self.count += 1
            self.changed.set()

    async def reach(self, count: int) -> None:
        while self.count < count:
            self.changed.clear()
            await self.changed.wait()


@pytest.fixture
def drops() -> Iterator[_Drops]:
    handler = _Drops()
    logger = logging.getLogger("llama_mesh.jetstream.connection")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_a_wait_and_a_run_whose_last_event_was_dropped_end(
    nats: EmbeddedNats, drops: _Drops, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiters, "PENDING_LIMIT", 1)
    release_tasks, callback_held, release_callback = (
        asyncio.Event(),
        asyncio.Event(),
        asyncio.Event(),
    )
    waiting = 0
    both_wait = asyncio.Event()

    def wait_begins() -> None:
        nonlocal waiting
        waiting += 1
        if waiting == 2:
            both_wait.set()

    async def hold_callback() -> None:
        callback_held.set()
        await release_callback.wait()

    services = {"echo": EchoWorkflow(), "held": HeldUntil(release_tasks)}
    async with LocalMesh(services, nats_url=nats.url) as mesh:
        client = mesh.client
        first, second, waited, run = [await client.create_session() for _ in range(4)]
        with (
            holding("waiters.final_held", hold_callback),
            armed("tasks.waiting", wait_begins),
        ):
            # The callback is held on this task's last event...
            await first.create_task("echo", arg1="a")
            await callback_held.wait()
            # ...and this one's, stored next, takes the subscription's one place.
            queued = await second.create_task("echo", arg1="b")
            assert [e.type async for e in queued.events()] == ["StopEvent"]
            # A WaitTask and a RunTask wait for tasks that end after it.
            handle = await waited.create_task("held", item="w")
            waits = asyncio.create_task(handle.result())
            runs = asyncio.create_task(run.run("held", item="r"))
            await both_wait.wait()
            release_tasks.set()
            await drops.reach(2)  # both last events dropped
            release_callback.set()
            async with asyncio.timeout(15):  # before: until each call's deadline
                assert await waits == "w done"
                assert await runs == "r done"
        assert (await handle.get()).state == resources_pb2.TASK_STATE_SUCCEEDED


async def test_a_wait_ends_although_the_consumer_it_listens_to_was_gone(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The consumer that brings the last events lives on one NATS node (the event
    # stream's leader when it was made); that node died, or the server forgot it, just
    # as the waited task ended. Its heartbeats stop, and nats.py makes it again from
    # the last event it had: the one stored meanwhile comes then.
    monkeypatch.setattr(waiters, "HEARTBEAT", 0.2)
    release, waits = asyncio.Event(), asyncio.Event()
    async with LocalMesh({"held": HeldUntil(release)}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task("held", item="w")
        with armed("tasks.waiting", waits.set):
            result = asyncio.create_task(handle.result())
            await waits.wait()
        nc = await nats_client.connect(nats.url)
        try:
            js, topology = nc.jetstream(), mesh.topology
            [gone] = [
                c.name
                for c in await js.consumers_info(topology.event_stream)
                if c.config.filter_subject == topology.final_events
            ]
            await js.delete_consumer(topology.event_stream, gone)
            release.set()
            async with asyncio.timeout(15):  # before: until the call's deadline
                assert await result == "w done"
            remade = [
                c.name
                for c in await js.consumers_info(topology.event_stream)
                if c.config.filter_subject == topology.final_events
            ]
            assert remade and gone not in remade
        finally:
            await nc.close()
