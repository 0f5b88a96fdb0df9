"""A service replica's journal: what it records, a control plane writes.

A replica may not write task records or events itself (its NATS user may publish on
none of their subjects, launch/nats_users.py): those subjects and keys name tasks,
not services, so a replica that could write them could write another service's. It
asks a control plane instead, on ``{prefix}.journal.{service}`` (journal.proto; the
one journal subject its NATS user may publish on), and the control plane checks that
the task is of that service before it records anything, through the same
``TaskJournal`` as every other writer (control_plane/journal_service.py).
``RemoteJournal`` has TaskJournal's methods (``Journal``), so the worker and
``jetstream.delivery.settle`` use either without knowing which.

- With no control plane up (one restarting), nobody took the request: it is asked
  again, with a backoff, until one answers (or the caller gives up: a deadline, a
  cancel). The task waits; it does not fail.
- A request taken but not answered in time (NATS TimeoutError), or that the control
  plane could not carry out because its store did not answer (StoreOutageError), is
  an outage (jetstream/outages.py): callers whose call is safe to repeat wait it out
  with ``through_outages``, as they would the store's own. Event ids are chosen here,
  before the first try, so a repeated publish is dropped as a duplicate.
- A failure of the control plane's own (INTERNAL) is JournalFailedError: the mesh's
  fault, so the attempt is handed back, not failed.
- A refusal comes back as the MeshError of its code (PERMISSION_DENIED,
  FAILED_PRECONDITION, RESOURCE_EXHAUSTED...), as the store's journal would raise it.
- One request per task is in flight at a time: with several control planes in the
  queue group, two at once could be recorded out of order.

    journal = RemoteJournal(nc, topology, "echo")
    task = await journal.record(name, event, replica_id="r1")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import grpc
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError

from llama_mesh.core import proto_time
from llama_mesh.core.errors import MeshError, error_for_code
from llama_mesh.core.names import TaskName, new_id
from llama_mesh.core.proto_time import now
from llama_mesh.core.status import status_code
from llama_mesh.jetstream.journal import Outgoing
from llama_mesh.jetstream.outages import FIRST_RETRY, MAX_RETRY, StoreOutageError
from llama_mesh.jetstream.topology import Topology
from llama_mesh.telemetry import metrics, tracing
from llama_mesh.v1 import journal_pb2, resources_pb2

logger = logging.getLogger(__name__)

RECORD = journal_pb2.JOURNAL_OPERATION_RECORD
RECORD_ONLY = journal_pb2.JOURNAL_OPERATION_RECORD_ONLY
PUBLISH = journal_pb2.JOURNAL_OPERATION_PUBLISH
CHARGE = journal_pb2.JOURNAL_OPERATION_CHARGE

# Seconds a control plane has to answer: longer than its own store calls may take
# (MeshState's JetStream timeout), so that it answers first when its store does not.
REQUEST_TIMEOUT = 15.0


class JournalFailedError(MeshError):
    """A control plane could not carry out a replica's request for a reason of its own
    (INTERNAL, UNKNOWN): the mesh's fault, not the workflow's (the attempt is handed
    back, as when the replica's own call to the store failed)."""

    code = grpc.StatusCode.INTERNAL


class Journal(Protocol):
    """What records task events: a control plane's TaskJournal (jetstream/journal.py),
    or a replica's RemoteJournal, which asks a control plane."""

    async def record(
        self,
        name: TaskName,
        event: resources_pb2.TaskEvent,
        *,
        replica_id: str = "",
        event_id: str = "",
        publish: bool = True,
    ) -> resources_pb2.Task: ...

    async def record_from(
        self,
        name: TaskName,
        event: resources_pb2.TaskEvent,
        *,
        replica_id: str = "",
        event_id: str = "",
        publish: bool = True,
        known: tuple[resources_pb2.Task, int] | None = None,
    ) -> tuple[resources_pb2.Task, int]: ...

    async def publish(
        self,
        name: TaskName,
        event: resources_pb2.TaskEvent,
        *,
        event_id: str = "",
        ttl: float | None = None,
    ) -> int: ...

    async def publish_many(
        self, name: TaskName, events: Sequence[Outgoing], *, ttl: float | None = None
    ) -> list[int]: ...

    async def charge(
        self, name: TaskName, event: resources_pb2.TaskEvent, *, replica_id: str = ""
    ) -> tuple[resources_pb2.Task, resources_pb2.TokenUsage | None]: ...


class RemoteJournal:
    """TaskJournal's methods, carried out by a control plane for one service."""

    def __init__(
        self,
        nc: NatsClient,
        topology: Topology,
        service: str,
        *,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._nc = nc
        self._subject = topology.journal_subject(service)
        self._timeout = timeout
        # Task id -> (its lock, how many hold or wait for it).
        self._in_flight: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, task_id: str) -> AsyncIterator[None]:
        lock, users = self._in_flight.get(task_id) or (asyncio.Lock(), 0)
        self._in_flight[task_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._in_flight[task_id]
            if users == 1:
                del self._in_flight[task_id]
            else:
                self._in_flight[task_id] = (lock, users - 1)

    async def _ask(
        self, name: TaskName, request: journal_pb2.JournalRequest
    ) -> journal_pb2.JournalResponse:
        request.task = str(name)
        data = request.SerializeToString()
        headers = tracing.inject({}) or None  # the control plane's span joins the trace
        delay = FIRST_RETRY
        waiting = False
        async with self._one_at_a_time(name.task_id):
            while True:
                try:
                    msg = await self._nc.request(
                        self._subject, data, timeout=self._timeout, headers=headers
                    )
                    break
                except NoRespondersError:
                    # No control plane is up (one restarting): nobody took the request,
                    # so asking again cannot do it twice.
                    if not waiting:
                        waiting = True
                        logger.warning("journal: no control plane answers for %s; waiting", name)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY)
        if waiting:
            logger.info("journal: a control plane answers for %s again", name)
        response = journal_pb2.JournalResponse.FromString(msg.data)
        if response.HasField("error"):
            code = status_code(response.error)
            if code is grpc.StatusCode.UNAVAILABLE:
                raise StoreOutageError(response.error.message)
            if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                raise JournalFailedError(response.error.message)
            raise error_for_code(code, response.error.message)
        return response

    async def record(
        self,
        name: TaskName,
        event: resources_pb2.TaskEvent,
        *,
        replica_id: str = "",
        event_id: str = "",
        publish: bool = True,
    ) -> resources_pb2.Task:
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
        """As TaskJournal.record_from (`known` is not sent: the control plane reads the
        record to check whose task it is)."""
        _stamp(name, event)
        response = await self._ask(
            name,
            journal_pb2.JournalRequest(
                operation=RECORD if publish else RECORD_ONLY,
                entries=[journal_pb2.JournalEntry(event=event, event_id=event_id or new_id())],
                replica_id=replica_id,
            ),
        )
        self._finished(name, response)
        return response.task, response.revision

    async def publish(
        self,
        name: TaskName,
        event: resources_pb2.TaskEvent,
        *,
        event_id: str = "",
        ttl: float | None = None,
    ) -> int:
        [sequence] = await self.publish_many(name, [(event, event_id)], ttl=ttl)
        return sequence

    async def publish_many(
        self, name: TaskName, events: Sequence[Outgoing], *, ttl: float | None = None
    ) -> list[int]:
        """Publish `events` (each with its id) of task `name` in this order, in one
        request (no state change); their stream sequences. As TaskJournal.publish_many,
        the same batch asked again stores each event once."""
        entries = []
        for event, event_id in events:
            _stamp(name, event)
            if event.state == resources_pb2.TASK_STATE_UNSPECIFIED:
                event.state = resources_pb2.TASK_STATE_RUNNING
            entries.append(journal_pb2.JournalEntry(event=event, event_id=event_id or new_id()))
        request = journal_pb2.JournalRequest(operation=PUBLISH, entries=entries)
        if ttl is not None:
            request.ttl.CopyFrom(proto_time.duration(ttl))
        response = await self._ask(name, request)
        return list(response.sequences)

    async def charge(
        self, name: TaskName, event: resources_pb2.TaskEvent, *, replica_id: str = ""
    ) -> tuple[resources_pb2.Task, resources_pb2.TokenUsage | None]:
        _stamp(name, event)
        response = await self._ask(
            name,
            journal_pb2.JournalRequest(
                operation=CHARGE,
                entries=[journal_pb2.JournalEntry(event=event, event_id=new_id())],
                replica_id=replica_id,
            ),
        )
        self._finished(name, response)
        usage = response.session_usage if response.HasField("session_usage") else None
        return response.task, usage

    def _finished(self, name: TaskName, response: journal_pb2.JournalResponse) -> None:
        if response.finished:
            # Counted by the replica that recorded it, once (as TaskJournal does).
            metrics.task_finished(response.task)
            logger.info("task %s %s", name, resources_pb2.TaskState.Name(response.task.state))


def _stamp(name: TaskName, event: resources_pb2.TaskEvent) -> None:
    """What the journal sets on an event, set before it is sent (callers read it)."""
    event.task = str(name)
    if not event.HasField("create_time"):
        event.create_time.CopyFrom(now())
