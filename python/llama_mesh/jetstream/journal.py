"""The task journal: the one place where a task's state changes.

Whoever runs a task (the Python runtime directly, or a service in another language
through the Queue API) reports what happens as TaskEvents. ``TaskJournal.record``
applies an event to the task's record in KV (compare-and-set, so concurrent writers
never lose an update) and then publishes it on the task's event subject, in that
order: a client that sees the last event and reads the task finds it finished.

A finished task's record and its events carry the task's TTL: they expire together.
A task that waits for input is listed in the `waiting` bucket (the inbox) once its
record says so, and taken out once it no longer does (a listing also drops an entry
whose task stopped waiting, should the process that changed it have died first).

Whoever finishes a task publishes its final event under one id (``final_event_id``).
A writer can lose its answer between the record and the event (a NATS node died):
its retry, or anyone's later attempt to finish the task, is refused (it has
finished), and first publishes the final event from the record if the stream does not
have it, so that nobody waiting for that event (a WaitTask, the next run in the
session) waits forever.

The stream stores one final event per task, whoever publishes it and however late:
every final event is published on the task's final subject only if that subject holds
none yet (``Nats-Expected-Last-Subject-Sequence: 0``). The id alone is not enough: the
stream forgets ids after its duplicate window (2 minutes), and a writer that stalled
longer, or two finishers that both found the event missing, would store a second one
(a replay or a history would show two ends). A publisher refused so takes its final
event as published: it gets the stored one's sequence and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import (
    APIError,
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.errors import NotFoundError as JsNotFoundError
from nats.js.kv import KeyValue

from llama_mesh.core import proto_time
from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.core.failpoints import failpoint
from llama_mesh.core.lifecycle import WAITING, TaskState, apply_event, final_event, is_final
from llama_mesh.core.names import TaskName, new_id
from llama_mesh.core.proto_time import now
from llama_mesh.jetstream.api_errors import WRONG_LAST_SEQUENCE
from llama_mesh.jetstream.buckets import ProtoBucket, Unchanged
from llama_mesh.jetstream.errors import store_errors
from llama_mesh.jetstream.kv_ttl import msg_ttl
from llama_mesh.jetstream.outages import StoreOutageError
from llama_mesh.jetstream.session_usage import SessionUsage
from llama_mesh.jetstream.topology import Topology
from llama_mesh.telemetry import metrics
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)

# How long a batch of events waits for its acknowledgements (the connection's JetStream
# context waits as long for one: jetstream/connection.py).
ACK_TIMEOUT = 10.0

# An event to publish and its id (Nats-Msg-Id: the stream stores one event per id).
Outgoing = tuple[resources_pb2.TaskEvent, str]

# What a final event is published with: stored only on a subject that holds nothing
# (nats-server refuses it, "wrong last sequence", once the task's final event is stored).
FIRST_ON_SUBJECT = {"Nats-Expected-Last-Subject-Sequence": "0"}
# Publishes of a final event refused while another publish of it was in flight (not
# stored yet) before the caller is left to wait it out as an outage. On a 3-node cluster
# on loopback, 30 of 30 such refusals were decided by the second publish.
FINAL_TRIES = 3


def task_key(name: TaskName) -> str:
    return f"{name.session_id}.{name.task_id}"


def final_event_id(name: TaskName) -> str:
    """The id (Nats-Msg-Id) of a task's final event, whoever publishes it."""
    return f"{name.task_id}.final"


@dataclass
class TaskJournal:
    """Records task events: KV first, then the event subject."""

    js: JetStreamContext
    topology: Topology
    tasks: ProtoBucket[resources_pb2.Task]
    waiting: KeyValue
    usage: SessionUsage
    # Whether a task it finishes is counted here (metrics.task_finished): not in a
    # control plane that records for a replica, which counts it itself.
    count_finished: bool = True

    async def record(
        self,
        name: TaskName,
        event: resources_pb2.TaskEvent,
        *,
        replica_id: str = "",
        event_id: str = "",
        publish: bool = True,
    ) -> resources_pb2.Task:
        """Apply `event` to the task and publish it; returns the task after it (see
        `record_from`)."""
        task, _ = await self.record_from(
            name, event, replica_id=replica_id, event_id=event_id, publish=publish
        )
        return task

    async def record_from(
        self,
        name: TaskName,
        event: resources_pb2.TaskEvent,
        *,
        replica_id: str = "",
        event_id: str = "",
        publish: bool = True,
        known: tuple[resources_pb2.Task, int] | None = None,
    ) -> tuple[resources_pb2.Task, int]:
        """Apply `event` to the task and publish it; the task after it and its revision.

        With publish=False (or an event without a type) only the record changes:
        a bare state change is not an event clients need to see. `known` is the
        record and revision the caller read last, to save a read.
        """
        event.task = str(name)
        if not event.HasField("create_time"):
            event.create_time.CopyFrom(now())

        changed = False
        was_waiting: list[bool] = []
        finished: list[resources_pb2.Task] = []

        def change(task: resources_pb2.Task) -> None:
            nonlocal changed
            changed = False
            was_waiting[:] = [task.state == WAITING]
            finished[:] = [task] if is_final(task.state) else []
            if not apply_event(task, event):
                raise Unchanged
            if replica_id:
                task.replica_id = replica_id
            changed = True

        try:
            task, revision = await self.tasks.mutate_from(
                task_key(name), str(name), change, known, ttl=kept_for
            )
        except FailedPreconditionError:
            if publish and is_final(event.state) and finished:
                await self._final_event_out(name, finished[0])
            raise
        if changed and is_final(task.state) and self.count_finished:
            # Counted by whoever recorded it, once: a final state takes no other.
            metrics.task_finished(task)
        # In the inbox before anyone hears that it waits; out once it says otherwise.
        if task.state == WAITING:
            await self.list_waiting(task)
        elif was_waiting and was_waiting[0]:
            await self.unlist_waiting(name)
        if publish and event.type:
            if is_final(event.state):
                failpoint("journal.final_recorded")
            sequence = await self.publish(name, event, event_id=event_id, ttl=ttl_of(task))
            if event.state == WAITING:
                task, revision = await self._number_request(name, sequence)
        if is_final(event.state):
            logger.info("task %s %s", name, TaskState.Name(event.state))
        return task, revision

    async def _final_event_out(self, name: TaskName, task: resources_pb2.Task) -> None:
        """Publish finished `task`'s final event from its record, unless the stream has
        it: its writer may have lost its answer between the record and the event (see
        the module's doc). Should the writer publish it after the read, the store keeps
        the first of the two."""
        if await self._stored_final(name) is not None:
            return  # the usual case: one read, no write
        _, stored = await self._publish(
            name, final_event(task), event_id=final_event_id(name), ttl=ttl_of(task)
        )
        if stored:
            logger.info("task %s: its final event was missing; published from its record", name)

    async def charge(
        self, name: TaskName, event: resources_pb2.TaskEvent, *, replica_id: str = ""
    ) -> tuple[resources_pb2.Task, resources_pb2.TokenUsage | None]:
        """Record `event`, which carries the tokens of an LLM call, on the task and add
        them to its session's count; the task and the count (None: no session left)."""
        return await asyncio.gather(
            self.record(name, event, replica_id=replica_id), self.usage.add(name, event.usage)
        )

    async def list_waiting(self, task: resources_pb2.Task) -> None:
        """Put a waiting task in the inbox (the `waiting` bucket)."""
        name = TaskName.parse(task.name)
        entry = {"c": task.create_sequence, "s": task.service}
        with store_errors(f"listing task {name} as waiting"):
            await self.waiting.put(task_key(name), json.dumps(entry).encode())

    async def unlist_waiting(self, name: TaskName, revision: int | None = None) -> None:
        """Take a task out of the inbox (only if its entry is still at `revision`)."""
        await unlist_waiting(self.waiting, name, revision)

    async def _number_request(
        self, name: TaskName, sequence: int
    ) -> tuple[resources_pb2.Task, int]:
        """Record the stream sequence of the event that asked for input: it is known
        only once published, and the record must say WAITING before anyone sees it."""

        def change(task: resources_pb2.Task) -> None:
            if task.state != WAITING or task.input_request.sequence:
                raise Unchanged
            task.input_request.sequence = sequence

        return await self.tasks.mutate_from(task_key(name), str(name), change, None)

    async def publish(
        self,
        name: TaskName,
        event: resources_pb2.TaskEvent,
        *,
        event_id: str = "",
        ttl: float | None = None,
    ) -> int:
        """Publish `event` on the task's subject (no state change), kept `ttl` seconds
        (the task's: ttl_of(task)); its stream sequence (a final event's: the one the
        stream holds, should it hold one already)."""
        sequence, _ = await self._publish(name, event, event_id=event_id, ttl=ttl)
        return sequence

    async def _publish(
        self,
        name: TaskName,
        event: resources_pb2.TaskEvent,
        *,
        event_id: str = "",
        ttl: float | None = None,
    ) -> tuple[int, bool]:
        """`publish`: the event's stream sequence, and whether this call stored it."""
        subject, envelope, headers = self._envelope(name, event, event_id)
        data = envelope.SerializeToString()
        with store_errors(f"publishing an event of task {name}"):
            for _ in range(FINAL_TRIES):
                try:
                    ack = await self.js.publish(
                        subject, data, headers=headers, msg_ttl=msg_ttl(ttl)
                    )
                    break
                except APIError as err:
                    if not _final_stored_before(err):
                        raise
                sequence = await self._stored_final(name)
                if sequence is not None:
                    return sequence, False
                # Refused while another publish of it was in flight (a clustered stream
                # refuses those too) and not stored yet: the store has decided that one
                # by the time it answers again (found, or stored now if it was lost).
            else:
                raise StoreOutageError(
                    f"the final event of task {name} is still being stored by another publish"
                )
        if is_final(event.state):
            failpoint("journal.final_published")
        return int(ack.seq), not ack.duplicate

    async def publish_many(
        self, name: TaskName, events: Sequence[Outgoing], *, ttl: float | None = None
    ) -> list[int]:
        """Publish `events` (each with its id) on the task's subjects, in this order, as
        `publish` does one; their stream sequences.

        All are sent, back to back on the one connection (so the stream stores them in
        this order), before any acknowledgement is awaited: a batch costs one round
        trip to the store, not one per event. Each keeps its id, so the same batch
        published again (after an outage) stores each event once. The first event in
        order the store did not store raises (a timeout: one not acknowledged), and
        events after it may be stored: the caller fails the run instead of going on.
        A final event is published as `publish` does it, once those before it are
        acknowledged.
        """
        sequences: list[int] = []
        batch: list[Outgoing] = []
        for event, event_id in events:
            if not is_final(event.state):
                batch.append((event, event_id))
                continue
            # Not sent with the others: nats-py's publish_async never hands a refusal to
            # its future (it times out, nats-io/nats.py#985), and a final event's
            # refusal is an answer (the module's doc).
            if batch:
                sequences += await self.acknowledged(
                    name, await self.send_many(name, batch, ttl=ttl)
                )
                batch = []
            sequences.append(await self.publish(name, event, event_id=event_id, ttl=ttl))
        if batch:
            sequences += await self.acknowledged(name, await self.send_many(name, batch, ttl=ttl))
        return sequences

    async def send_many(
        self, name: TaskName, events: Sequence[Outgoing], *, ttl: float | None = None
    ) -> list[asyncio.Future[PubAck]]:
        """Send `events` (none final: `publish_many` publishes those) as `publish_many`
        does, without waiting for the store: their acknowledgements to come, for
        `acknowledged`. Nothing here waits unless the connection holds too many
        unacknowledged publishes already."""
        assert not any(is_final(event.state) for event, _ in events), (
            "a final event goes through publish_many"
        )
        acks: list[asyncio.Future[PubAck]] = []
        try:
            with store_errors(f"publishing {len(events)} events of task {name}"):
                failpoint("journal.publish_many")
                for event, event_id in events:
                    subject, envelope, headers = self._envelope(name, event, event_id)
                    acks.append(
                        await self.js.publish_async(
                            subject,
                            envelope.SerializeToString(),
                            headers=headers,
                            msg_ttl=msg_ttl(ttl),
                        )
                    )
                failpoint("journal.batch_sent")
        except BaseException:
            _forget(acks)
            raise
        return acks

    async def acknowledged(
        self, name: TaskName, acks: Sequence[asyncio.Future[PubAck]]
    ) -> list[int]:
        """The stream sequences of the events `send_many` sent, once the store has
        acknowledged them (ACK_TIMEOUT at most); raises as `publish_many` does."""
        try:
            with store_errors(f"publishing {len(acks)} events of task {name}"):
                if acks:
                    await asyncio.wait(acks, timeout=ACK_TIMEOUT)
                return [int(_acknowledged(ack).seq) for ack in acks]
        finally:
            _forget(acks)

    async def _stored_final(self, name: TaskName) -> int | None:
        """The stream sequence of the task's final event (None: the stream has none)."""
        subject = self.topology.final_event_subject(name.task_id)
        try:
            msg = await self.js.get_last_msg(self.topology.event_stream, subject)
        except JsNotFoundError:
            return None
        assert msg.seq is not None  # a stored message has one
        return msg.seq

    def _envelope(
        self, name: TaskName, event: resources_pb2.TaskEvent, event_id: str
    ) -> tuple[str, resources_pb2.Envelope, dict[str, str]]:
        """The subject, envelope and headers `event` of task `name` is published with.
        An event that names no state is one of a running task: it says RUNNING, the
        task's state after it. A final event is stored only if its task has none."""
        event.task = str(name)
        if event.state == resources_pb2.TASK_STATE_UNSPECIFIED:
            event.state = resources_pb2.TASK_STATE_RUNNING
        if not event.HasField("create_time"):
            event.create_time.CopyFrom(now())
        envelope = resources_pb2.Envelope(id=event_id or new_id(), task_event=event)
        envelope.publish_time.CopyFrom(event.create_time)
        headers = {"Nats-Msg-Id": envelope.id}
        if not is_final(event.state):
            return self.topology.event_subject(name.task_id), envelope, headers
        # The id stays: a cluster answers a retry within the duplicate window with the
        # first one's ack (a single server refuses it: the same sequence, one read more).
        headers.update(FIRST_ON_SUBJECT)
        return self.topology.final_event_subject(name.task_id), envelope, headers


def _forget(acks: Sequence[asyncio.Future[PubAck]]) -> None:
    # An acknowledgement that never came holds one of the context's slots for pending
    # publishes until its future is done.
    for ack in acks:
        ack.cancel()


def _final_stored_before(err: APIError) -> bool:
    """Whether the store refused a publish for its expected last subject sequence: a
    final event's, as its task's final event is stored (or being stored) already."""
    return err.err_code in WRONG_LAST_SEQUENCE


def _acknowledged(ack: asyncio.Future[PubAck]) -> PubAck:
    """The store's acknowledgement of one publish; what it refused it with, or a timeout."""
    if not ack.done():
        raise NatsTimeoutError
    return ack.result()


async def unlist_waiting(waiting: KeyValue, name: TaskName, revision: int | None = None) -> None:
    """Take a task out of the inbox, the `waiting` bucket (only if its entry is still
    at `revision`)."""
    with contextlib.suppress(KeyNotFoundError, KeyWrongLastSequenceError, BadRequestError):
        await waiting.delete(task_key(name), last=revision)


def ttl_of(task: resources_pb2.Task) -> float | None:
    """How long the task's events are kept: its TTL, counted from when they are
    published (None: the stream's own limit)."""
    return proto_time.seconds(task.ttl) if task.HasField("ttl") else None


def kept_for(task: resources_pb2.Task) -> float | None:
    """How long a record of the task is kept: until changed, or its TTL once final."""
    return ttl_of(task) if is_final(task.state) else None
