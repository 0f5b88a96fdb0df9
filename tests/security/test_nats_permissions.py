"""A service replica's NATS user may do what its own service needs and nothing else.

The mesh runs on a nats-server that admits only its components, each with the nkey
and permissions `up` gives it (launch/nats_users.py). Everything the replicas need
works under those permissions: Contexts kept across runs, events streamed, a child
task, a question answered. Then, as counter's NATS user, the test tries every way to
write a task of `approval` that waits for its person: its record, its events (and
final event, also on the live subject streams follow), its inbox entry, its session's
token count, its dead letters, a journal request in approval's name or, in counter's
own name, about approval's task, listening in on approval's journal requests or tasks
or on the replies to anyone's requests but its own (approval's, a control plane's),
the control planes' secrets, and its consumer of the task stream pointed at approval's
tasks (or any other made, or approval's deleted). NATS refuses each (a permissions
violation), the control plane refuses the request about a task that is not counter's
(PERMISSION_DENIED), and approval's task is exactly as it was, and still answers to
its person.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from workflows import Workflow

from llama_mesh.client import AsyncClient, TaskHandle
from llama_mesh.config import ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.jetstream.topology import Topology
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.launch.nats_users import (
    CONTROL_PLANE,
    NatsUsers,
    service_permissions,
    service_user,
)
from llama_mesh.v1 import journal_pb2, resources_pb2
from llama_mesh.worker.runtime import ServiceRuntime

from mesh_workflows import (
    ApprovalWorkflow,
    CounterWorkflow,
    InnerWorkflow,
    StreamingWorkflow,
    make_outer,
)

SUCCEEDED = resources_pb2.TASK_STATE_SUCCEEDED
# The services the mesh runs, each under its own NATS user.
SERVICES: dict[str, Callable[[], Workflow]] = {
    "counter": CounterWorkflow,
    "approval": ApprovalWorkflow,
    "stream": StreamingWorkflow,
    "inner": InnerWorkflow,
    "outer": make_outer,
}


@dataclass
class LockedMesh:
    nats: EmbeddedNats
    users: NatsUsers
    client: AsyncClient


@pytest.fixture
async def locked_mesh(tmp_path: Path) -> AsyncIterator[LockedMesh]:
    users = NatsUsers.ensure(tmp_path / "users", "mesh", list(SERVICES))
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(
            EmbeddedNats.start(tmp_path / "nats", extra_args=("-c", str(users.config_file)))
        )
        cp = await stack.enter_async_context(
            ControlPlaneServer.start([server.url], nkeys_seed=str(users.seed_file(CONTROL_PLANE)))
        )
        for service, make in SERVICES.items():
            await stack.enter_async_context(
                ServiceRuntime.start(
                    make(),
                    ServiceConfig(service),
                    cp.address,
                    nkeys_seed=str(users.seed_file(service_user(service))),
                    drain_timeout=2.0,
                )
            )
        client = await stack.enter_async_context(AsyncClient(cp.address))
        yield LockedMesh(server, users, client)


class Violations:
    """The permissions violations NATS told one connection of."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._changed = asyncio.Condition()

    async def add(self, err: Exception) -> None:
        async with self._changed:
            self.seen.append(str(err).lower())
            self._changed.notify_all()

    async def of(self, subject: str) -> None:
        """Once a violation naming `subject` came (the server's -ERR is asynchronous)."""
        async with self._changed:
            await self._changed.wait_for(lambda: any(subject.lower() in v for v in self.seen))


async def _as_service(mesh: LockedMesh, service: str, violations: Violations) -> NatsClient:
    """A connection as `service`'s replicas make it: its NATS user, its inbox prefix."""
    return await nats.connect(
        mesh.nats.url,
        nkeys_seed=str(mesh.users.seed_file(service_user(service))),
        inbox_prefix=Topology().inbox_prefix(service),
        error_cb=violations.add,
    )


async def _as_control_plane(
    mesh: LockedMesh, request: Callable[[JetStreamContext], Awaitable[object]]
) -> None:
    """Make `request` as a control plane does: its NATS user, its inbox prefix."""
    nc = await nats.connect(
        mesh.nats.url,
        nkeys_seed=str(mesh.users.seed_file(CONTROL_PLANE)),
        inbox_prefix=Topology().inbox_prefix(),
    )
    try:
        await request(nc.jetstream())
    finally:
        await nc.close()


async def _stored(mesh: LockedMesh, key: str) -> bytes:
    """The task's record as stored, read as a control plane."""
    nc = await nats.connect(mesh.nats.url, nkeys_seed=str(mesh.users.seed_file(CONTROL_PLANE)))
    try:
        kv = await nc.jetstream().key_value("mesh_tasks")
        return (await kv.get(key)).value or b""
    finally:
        await nc.close()


async def _task_consumers(mesh: LockedMesh) -> dict[str, str]:
    """The consumers of the task stream and their filters, read as a control plane."""
    nc = await nats.connect(mesh.nats.url, nkeys_seed=str(mesh.users.seed_file(CONTROL_PLANE)))
    try:
        infos = await nc.jetstream().consumers_info("MESH_TASKS")
        return {i.name: i.config.filter_subject or "" for i in infos}
    finally:
        await nc.close()


def _consumer_request(durable: str | None, filter_subject: str) -> bytes:
    config: dict[str, Any] = {"filter_subject": filter_subject, "ack_policy": "explicit"}
    if durable is not None:
        config["durable_name"] = durable
    return json.dumps({"stream_name": "MESH_TASKS", "config": config}).encode()


async def _until_waiting(handle: TaskHandle) -> AsyncIterator[Any]:
    async for event in handle.events():
        yield event
        if event.state == "WAITING_FOR_INPUT":
            return


def _journal_request(
    name: str, operation: int, event: resources_pb2.TaskEvent, event_id: str = ""
) -> bytes:
    return journal_pb2.JournalRequest(
        task=name,
        operation=operation,  # type: ignore[arg-type]
        entries=[journal_pb2.JournalEntry(event=event, event_id=event_id)],
    ).SerializeToString()


@pytest.mark.timeout(120)
async def test_a_replica_cannot_write_a_task_or_event_of_another_service(
    locked_mesh: LockedMesh, caplog: pytest.LogCaptureFixture
) -> None:
    mesh = locked_mesh
    # What the replicas need works under their permissions.
    session = await mesh.client.create_session()
    assert await session.run("counter") == 1
    assert await session.run("counter") == 2  # the Context was kept
    streamed = await session.create_task("stream", n=3)
    assert [e.type async for e in streamed.events() if e.type.endswith("Progress")] == [
        "Progress"
    ] * 3
    assert await streamed.result() == 3
    assert await session.run("outer", arg1="x") == "x_result_result"  # a child task
    # A task that waits for the session's earlier one (on its final event).
    third, fourth = [await session.create_task("counter") for _ in range(2)]
    assert [await third.result(), await fourth.result()] == [3, 4]

    victim = await session.create_task("approval", question="ship it?")
    events_before = [(e.sequence, e.type) async for e in _until_waiting(victim)]
    name = victim.name
    session_id, task_id = name.split("/")[1], name.split("/")[3]
    key = f"{session_id}.{task_id}"
    stored_before = await _stored(mesh, key)

    forged_event = resources_pb2.TaskEvent(task=name, type="StopEvent", state=SUCCEEDED)
    forged_event.payload.string_value = "made up"
    forged_task = resources_pb2.Task.FromString(stored_before)
    forged_task.state = SUCCEEDED
    forged_task.result.string_value = "made up"
    envelope = resources_pb2.Envelope(id="forged", task_event=forged_event).SerializeToString()
    usage = resources_pb2.TokenUsage(total_tokens=-1000).SerializeToString()

    violations = Violations()
    nc = await _as_service(mesh, "counter", violations)
    try:
        js = nc.jetstream(timeout=1)
        kv_tasks = await js.key_value("mesh_tasks")  # reading is allowed
        assert (await kv_tasks.get(key)).value == stored_before
        refused: dict[str, Awaitable[Any]] = {
            # the task's record
            f"$kv.mesh_tasks.{key}": kv_tasks.put(key, forged_task.SerializeToString()),
            # its events, and its final event
            f"mesh.events.{task_id}.e": js.publish(f"mesh.events.{task_id}.e", envelope),
            f"mesh.events.{task_id}.end": js.publish(f"mesh.events.{task_id}.end", envelope),
            # an answer to its question
            f"mesh.input.{task_id}": js.publish(f"mesh.input.{task_id}", envelope),
            # its entry in the inbox, and its session's token count
            f"$kv.mesh_waiting.{key}": js.publish(f"$KV.mesh_waiting.{key}", b""),
            f"$kv.mesh_usage.{session_id}": js.publish(f"$KV.mesh_usage.{session_id}", usage),
            # approval's session state, and its dead letters
            f"$kv.mesh_session_state.{session_id}.approval": js.publish(
                f"$KV.mesh_session_state.{session_id}.approval", b"{}"
            ),
            "mesh.dead.approval": js.publish("mesh.dead.approval", b"x"),
            # a journal request in approval's name
            "mesh.journal.approval": nc.request(
                "mesh.journal.approval",
                _journal_request(name, journal_pb2.JOURNAL_OPERATION_RECORD, forged_event),
                timeout=1,
            ),
            # taking approval's tasks from its consumer
            "$js.api.consumer.msg.next.mesh_tasks.svc_approval": nc.request(
                "$JS.API.CONSUMER.MSG.NEXT.MESH_TASKS.svc_approval", b"{}", timeout=1
            ),
            # counter's consumer filtered on approval's tasks (JetStream's create of a
            # durable that exists updates it), any other consumer of the task stream,
            # or approval's deleted
            "$js.api.consumer.durable.create.mesh_tasks.svc_counter": nc.request(
                "$JS.API.CONSUMER.DURABLE.CREATE.MESH_TASKS.svc_counter",
                _consumer_request("svc_counter", "mesh.tasks.approval"),
                timeout=1,
            ),
            "$js.api.consumer.create.mesh_tasks.svc_counter.mesh.tasks.approval": nc.request(
                "$JS.API.CONSUMER.CREATE.MESH_TASKS.svc_counter.mesh.tasks.approval",
                _consumer_request("svc_counter", "mesh.tasks.approval"),
                timeout=1,
            ),
            '"$js.api.consumer.create.mesh_tasks"': nc.request(
                "$JS.API.CONSUMER.CREATE.MESH_TASKS",
                _consumer_request(None, "mesh.tasks.approval"),
                timeout=1,
            ),
            "$js.api.consumer.delete.mesh_tasks.svc_approval": nc.request(
                "$JS.API.CONSUMER.DELETE.MESH_TASKS.svc_approval", b"", timeout=1
            ),
            # deleting the mesh's streams
            "$js.api.stream.delete.mesh_events": nc.request(
                "$JS.API.STREAM.DELETE.MESH_EVENTS", b"", timeout=1
            ),
            # the control planes' secrets (the key that signs ack ids)
            "$js.api.stream.msg.get.kv_mesh_secrets": nc.request(
                "$JS.API.STREAM.MSG.GET.KV_mesh_secrets",
                b'{"last_by_subj": "$KV.mesh_secrets.ack_ids"}',
                timeout=1,
            ),
        }
        for subject, attempt in refused.items():
            with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                await attempt
            await violations.of(subject)
        # Listening in: as a control plane of the journal, on approval's tasks, or on
        # the replies to anyone's requests but its own.
        overheard: list[str] = []

        async def overhear(msg: Msg) -> None:
            overheard.append(msg.subject)

        for subject, queue in (
            ("mesh.journal.approval", "control-plane"),
            ("mesh.tasks.>", ""),
            ("_INBOX.>", ""),
            ("_INBOX.mesh.svc.approval.>", ""),
            ("_INBOX.mesh.cp.>", ""),
            (">", ""),
        ):
            await nc.subscribe(subject, queue=queue, cb=overhear)
            await violations.of(f'subscription to "{subject}"')
        # A control plane asks about the secrets bucket: counter hears nothing of the
        # reply (its own replies it does hear).
        own: list[str] = []

        async def own_reply(msg: Msg) -> None:
            own.append(msg.subject)

        await nc.subscribe("_INBOX.mesh.svc.counter.>", cb=own_reply)
        await _as_control_plane(mesh, lambda js: js.stream_info("KV_mesh_secrets"))
        await js.stream_info("KV_mesh_tasks")
        await nc.flush()  # anything the server sent counter before now has arrived
        assert overheard == []
        assert own and all(s.startswith("_INBOX.mesh.svc.counter.") for s in own)
        # Its cancel signal (core NATS: no reply to wait for).
        await nc.publish(f"mesh.cancel.{task_id}", b"")
        await violations.of(f"mesh.cancel.{task_id}")
        # Its last event on the live subject that streams follow (turns, responses,
        # StreamTaskEvents: live_events.py), with made-up sequences as the stream's
        # republish gives them.
        await nc.publish(
            f"mesh.live.{task_id}.end",
            envelope,
            headers={"Nats-Sequence": "999999999", "Nats-Last-Sequence": "0"},
        )
        await violations.of(f"mesh.live.{task_id}.end")

        # On counter's own journal subject, about approval's task: refused by the
        # control plane, whatever the operation.
        usage_event = resources_pb2.TaskEvent(type="llama_mesh.TokenUsage")
        usage_event.usage.total_tokens = 5
        plain = resources_pb2.TaskEvent(type="Progress")
        for operation, event in (
            (journal_pb2.JOURNAL_OPERATION_RECORD, forged_event),
            (journal_pb2.JOURNAL_OPERATION_RECORD_ONLY, forged_event),
            (journal_pb2.JOURNAL_OPERATION_PUBLISH, plain),
            (journal_pb2.JOURNAL_OPERATION_PUBLISH, forged_event),
            (journal_pb2.JOURNAL_OPERATION_CHARGE, usage_event),
        ):
            reply = await nc.request(
                "mesh.journal.counter", _journal_request(name, operation, event), timeout=10
            )
            answer = journal_pb2.JournalResponse.FromString(reply.data)
            assert answer.error.code == 7, (operation, answer)  # PERMISSION_DENIED
            assert "it is a task of service 'approval'" in answer.error.message
    finally:
        await nc.close()

    # Each service's consumer takes its own service's tasks, and there is no other.
    assert await _task_consumers(mesh) == {
        f"svc_{service}": f"mesh.tasks.{service}" for service in SERVICES
    }
    # The victim is as it was, and still answers to its person.
    assert await _stored(mesh, key) == stored_before
    assert [(e.sequence, e.type) async for e in _until_waiting(victim)] == events_before
    await victim.send_event("HumanResponseEvent", response="yes")
    assert await victim.result() == {"answer": "yes"}
    # And the mesh's own components were refused nothing all along.
    assert not [r for r in caplog.records if "permissions violation" in r.getMessage().lower()]


def test_the_external_cluster_permissions_in_the_docs_are_the_ones_up_gives() -> None:
    """docs/security.md's `authorization` block for an external cluster, with its
    `{stream}` entries written out for each stream it names, is `service_permissions`."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    section = page[page.index("For an external cluster") :]
    streams = re.findall(r"`((?:KV_mesh_\w+)|(?:MESH_[A-Z]+))`", section[: section.index("```")])
    block = section[section.index("```json") + len("```json") : section.index("```\n", 10)]
    [_, echo] = json.loads(block)["authorization"]["users"]

    def written_out(subjects: list[str]) -> list[str]:
        return sorted(
            s.replace("{stream}", stream)
            for s in subjects
            for stream in (streams if "{stream}" in s else [""])
        )

    given: dict[str, Any] = service_permissions("mesh", "echo")
    for direction in ("publish", "subscribe"):
        assert written_out(echo["permissions"][direction]["allow"]) == sorted(
            given[direction]["allow"]
        ), direction
        assert "deny" not in echo["permissions"][direction]
        assert "deny" not in given[direction]
