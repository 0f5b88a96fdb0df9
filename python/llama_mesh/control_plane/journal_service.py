"""The control plane's side of replicas' journal requests (proto/llama_mesh/v1/journal.proto).

A replica records nothing itself (jetstream/remote_journal.py): it asks on
``{prefix}.journal.{service}``, a subject only that service's replicas may publish on
(launch/nats_users.py), and every control plane answers, in one queue group. The
service the subject names is the caller: a request about a task of another service
is PERMISSION_DENIED and writes nothing, whatever else it says. What a request may
change is decided by the task lifecycle (core/lifecycle.apply_event) in the journal,
as for every other writer.

    async with JournalService.serving(state):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator

import grpc
import nats.errors
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import PubAck

from llama_mesh.core import proto_time
from llama_mesh.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    MeshError,
    NotFoundError,
    PermissionDeniedError,
)
from llama_mesh.core.lifecycle import is_final
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import TaskJournal, task_key, ttl_of
from llama_mesh.jetstream.outages import is_outage
from llama_mesh.telemetry import tracing
from llama_mesh.v1 import journal_pb2, resources_pb2

logger = logging.getLogger(__name__)

QUEUE_GROUP = "control-plane"
# Tasks whose service is known here ({session}.{task} -> service): a task never changes
# service, so a plain event needs no read of its record.
_KNOWN_TASKS = 10_000
# Records of running tasks as last written here: the task's next change is then one
# compare-and-set (a read first only if someone else wrote in between).
_KNOWN_RECORDS = 1024
# Events in one PUBLISH request (a batch of token deltas is far fewer).
MAX_ENTRIES = 1000
# The name of the task that answers a request starts with this.
ANSWER_TASK = "journal answer"
# The states of an event that changes none: all a plain publish may carry.
_PLAIN = frozenset({resources_pb2.TASK_STATE_UNSPECIFIED, resources_pb2.TASK_STATE_RUNNING})

_OPERATIONS = {
    journal_pb2.JOURNAL_OPERATION_RECORD: "journal.record",
    journal_pb2.JOURNAL_OPERATION_RECORD_ONLY: "journal.record",
    journal_pb2.JOURNAL_OPERATION_PUBLISH: "journal.publish",
    journal_pb2.JOURNAL_OPERATION_CHARGE: "journal.charge",
}


def _status(code: grpc.StatusCode, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code.value[0], message=message)


class JournalService:
    """Answers the journal requests of service replicas."""

    def __init__(self, state: MeshState) -> None:
        assert isinstance(state.journal, TaskJournal), "a control plane writes the store"
        self.state = state
        # The replica that asked counts the tasks it finished, not this process.
        self.journal = dataclasses.replace(state.journal, count_finished=False)
        self._services: OrderedDict[str, str] = OrderedDict()
        self._records: OrderedDict[str, tuple[resources_pb2.Task, int]] = OrderedDict()
        self._answering: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def serving(cls, state: MeshState) -> AsyncIterator[JournalService]:
        service = cls(state)
        service._subscription = await state.nc.subscribe(
            state.topology.journal_subject("*"), queue=QUEUE_GROUP, cb=service._on_request
        )
        try:
            yield service
        finally:
            with contextlib.suppress(Exception):
                await service._subscription.unsubscribe()
            # Requests taken are answered: a replica waiting for one is not left to
            # time out while this control plane stops.
            if service._answering:
                await asyncio.gather(*service._answering, return_exceptions=True)

    async def _on_request(self, msg: Msg) -> None:
        # One task per request: a slow compare-and-set must not hold up the others
        # (a subscription's callbacks run one at a time). A replica sends one request
        # per task at a time, so these never reorder one task's events; a plain
        # publish is sent before its task starts (_send_at_once).
        service = msg.subject.rpartition(".")[2]
        try:
            request: journal_pb2.JournalRequest | None = journal_pb2.JournalRequest.FromString(
                msg.data
            )
        except DecodeError:
            request = None
        sent = await self._send_at_once(service, request) if request is not None else None
        answer = asyncio.create_task(
            self._answer(msg, service, request, sent), name=f"{ANSWER_TASK} {msg.subject}"
        )
        self._answering.add(answer)
        answer.add_done_callback(self._answering.discard)

    async def _send_at_once(
        self, service: str, request: journal_pb2.JournalRequest
    ) -> _Sent | None:
        """The events of a plain publish of a task known here to be `service`'s (a
        batch of token deltas, most requests), sent to the store now; None for any
        other request, which its task carries out whole.

        Sent from the subscription's callback, not from the request's task: starting
        that task first cost each token a turn of the event loop before its publish
        (0.05-0.07 ms, issue 14). Sending does not wait (TaskJournal.send_many), so it
        holds up no other request; the task waits for the store's acknowledgements.
        """
        if request.operation != journal_pb2.JOURNAL_OPERATION_PUBLISH:
            return None
        if not 1 <= len(request.entries) <= MAX_ENTRIES or not all(
            entry.event.state in _PLAIN for entry in request.entries
        ):
            return None
        try:
            name = TaskName.parse(request.task, "task")
        except MeshError:
            return None
        if self._services.get(task_key(name)) != service:
            return None  # read (and refused if not its own) in the task
        ttl = proto_time.seconds(request.ttl) if request.HasField("ttl") else None
        try:
            acks = await self.journal.send_many(
                name,
                [(entry.event, _scoped(name, entry.event_id)) for entry in request.entries],
                ttl=ttl,
            )
        except Exception as err:
            return _Sent(name, [], err)
        return _Sent(name, acks)

    async def _answer(
        self,
        msg: Msg,
        service: str,
        request: journal_pb2.JournalRequest | None,
        sent: _Sent | None,
    ) -> None:
        try:
            if request is None:
                raise DecodeError
            with tracing.span(
                _OPERATIONS.get(request.operation, "journal"),
                parent=tracing.extract(msg.headers),
                kind="SERVER",
                **{"llama_mesh.service": service, "llama_mesh.task": request.task},
            ):
                if sent is None:
                    response = await self.handle(service, request)
                else:
                    response = await self._acknowledged(sent)
        except MeshError as err:
            response = journal_pb2.JournalResponse(error=_status(err.code, err.message))
        except DecodeError:
            response = journal_pb2.JournalResponse(
                error=_status(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "not a JournalRequest (llama_mesh.v1.JournalRequest)",
                )
            )
        except Exception as err:
            if is_outage(err):
                message = f"the store did not answer: {err!r}"
                response = journal_pb2.JournalResponse(
                    error=_status(grpc.StatusCode.UNAVAILABLE, message)
                )
            else:
                logger.exception("journal: a request of service %s failed", service)
                response = journal_pb2.JournalResponse(
                    error=_status(grpc.StatusCode.INTERNAL, f"the journal failed: {err!r}")
                )
        if msg.reply:
            with contextlib.suppress(nats.errors.Error):
                await msg.respond(response.SerializeToString())

    async def _owned(
        self, service: str, name: TaskName, *, read: bool
    ) -> tuple[resources_pb2.Task, int] | None:
        """The task's record (if `read`, or if its service is not known here yet), once
        the task is known to be `service`'s; PERMISSION_DENIED if it is not."""
        key = task_key(name)
        owner = self._services.get(key)
        found = None
        if owner is None or read:
            found = await self.state.tasks.find(key)
            if found is None:
                raise NotFoundError(f"task {str(name)!r} not found")
            owner = found[0].service
            self._services[key] = owner
            self._services.move_to_end(key)
            if len(self._services) > _KNOWN_TASKS:
                self._services.popitem(last=False)
        if owner != service:
            logger.warning(
                "journal: a replica of %s tried to write task %s of service %s; refused",
                service,
                name,
                owner,
            )
            raise PermissionDeniedError(
                f"a replica of service {service!r} may not write task {str(name)!r}: "
                f"it is a task of service {owner!r}"
            )
        return found

    async def handle(
        self, service: str, request: journal_pb2.JournalRequest
    ) -> journal_pb2.JournalResponse:
        """Carry out `request` of a replica of `service`."""
        name = TaskName.parse(request.task, "task")
        operation = request.operation
        if operation not in _OPERATIONS:
            raise InvalidArgumentError(f"unknown journal operation {operation}")
        entries = request.entries
        if operation != journal_pb2.JOURNAL_OPERATION_PUBLISH and len(entries) != 1:
            raise InvalidArgumentError(f"a {_OPERATIONS[operation]} takes exactly one event")
        if not 1 <= len(entries) <= MAX_ENTRIES:
            raise InvalidArgumentError(f"a publish takes 1 to {MAX_ENTRIES} events")
        if operation == journal_pb2.JOURNAL_OPERATION_PUBLISH:
            return await self._publish(service, name, request)
        event = entries[0].event
        if operation == journal_pb2.JOURNAL_OPERATION_CHARGE:
            if not event.HasField("usage") or event.state:
                raise InvalidArgumentError("a charge takes an event with usage and no state")
            await self._owned(service, name, read=False)
            task, usage = await self.journal.charge(name, event, replica_id=request.replica_id)
            response = journal_pb2.JournalResponse(task=task)
            if usage is not None:
                response.session_usage.CopyFrom(usage)
            return response
        return await self._record(service, name, request)

    async def _record(
        self, service: str, name: TaskName, request: journal_pb2.JournalRequest
    ) -> journal_pb2.JournalResponse:
        key = task_key(name)
        entry = request.entries[0]
        known = self._records.pop(key, None)
        if known is not None and known[0].service != service:
            known = None  # checked again below, from the store
        if known is None:
            known = await self._owned(service, name, read=True)
        assert known is not None
        record = functools.partial(
            self.journal.record_from,
            name,
            entry.event,
            replica_id=request.replica_id,
            event_id=_scoped(name, entry.event_id),
            publish=request.operation == journal_pb2.JOURNAL_OPERATION_RECORD,
        )
        try:
            task, revision = await record(known=known)
        except FailedPreconditionError:
            if is_final(known[0].state):
                raise  # finished: nothing to read again (journal.py saw its final event out)
            # Refused by the lifecycle: as the record is now, not as it was here.
            task, revision = await record(known=None)
        if not is_final(task.state):
            self._records[key] = (task, revision)
            if len(self._records) > _KNOWN_RECORDS:
                self._records.popitem(last=False)
        # A final task takes no other event: this request is the one that finished it.
        finished = is_final(task.state)
        return journal_pb2.JournalResponse(task=task, revision=revision, finished=finished)

    async def _publish(
        self, service: str, name: TaskName, request: journal_pb2.JournalRequest
    ) -> journal_pb2.JournalResponse:
        final = any(is_final(entry.event.state) for entry in request.entries)
        found = await self._owned(service, name, read=final)
        ttl = proto_time.seconds(request.ttl) if request.HasField("ttl") else None
        for entry in request.entries:
            state = entry.event.state
            if not is_final(state) and state not in _PLAIN:
                raise InvalidArgumentError(
                    "a published event changes no state: record it to change the task's"
                )
            if is_final(state) and (found is None or found[0].state != state):
                # A final event is published only again, as the record has it.
                raise FailedPreconditionError(
                    f"task {request.task!r} is not {resources_pb2.TaskState.Name(state)}:"
                    " a state change is recorded, not published"
                )
        if found is not None:
            ttl = ttl_of(found[0])
        sequences = await self.journal.publish_many(
            name,
            [(entry.event, _scoped(name, entry.event_id)) for entry in request.entries],
            ttl=ttl,
        )
        return journal_pb2.JournalResponse(sequences=sequences)

    async def _acknowledged(self, sent: _Sent) -> journal_pb2.JournalResponse:
        """The answer to a publish sent at once, once the store has acknowledged it."""
        if sent.failure is not None:
            raise sent.failure
        sequences = await self.journal.acknowledged(sent.name, sent.acks)
        return journal_pb2.JournalResponse(sequences=sequences)


@dataclasses.dataclass
class _Sent:
    """A publish sent at once (JournalService._send_at_once): the task, the store's
    acknowledgements to come, or why sending failed."""

    name: TaskName
    acks: list[asyncio.Future[PubAck]]
    failure: Exception | None = None


def _scoped(name: TaskName, event_id: str) -> str:
    """De-duplication ids are scoped to the task: a replica cannot pick the id of an
    event of a task it does not own, so that the stream drops that event as a repeat."""
    if not event_id or event_id.startswith(f"{name.task_id}."):
        return event_id
    return f"{name.task_id}.{event_id}"
