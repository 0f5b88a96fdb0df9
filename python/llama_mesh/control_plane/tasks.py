"""The task RPCs: create, run, wait, get, list, cancel, stream events, send an event.

A task's record lives in the `tasks` bucket and its events in the event stream;
the record is changed by the journal as events are recorded. Creating is in
task_creation, cancelling in task_cancellation; waits end on the task's last event
(waiters).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from google.protobuf import json_format
from nats.js.errors import NotFoundError as JsNotFoundError

from llama_mesh.control_plane.namespaces import SessionScope, require_visible
from llama_mesh.control_plane.registry import ServiceRegistry
from llama_mesh.control_plane.sessions import Sessions
from llama_mesh.control_plane.task_answers import answer_task
from llama_mesh.control_plane.task_cancellation import cancel_task
from llama_mesh.control_plane.task_creation import create_task, new_task_id, new_task_id_for
from llama_mesh.control_plane.task_listing import list_tasks
from llama_mesh.control_plane.waiters import FinalEventWaiters, until_set
from llama_mesh.core import proto_time
from llama_mesh.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from llama_mesh.core.failpoints import failpoint
from llama_mesh.core.lifecycle import (
    PENDING,
    WAITING,
    deadline_event,
    final_event,
    is_final,
)
from llama_mesh.core.limits import (
    MAX_EVENT_BYTES,
    MAX_REASON_BYTES,
    MAX_TYPE_NAME_CHARS,
    check_bytes,
    check_chars,
    check_text,
)
from llama_mesh.core.names import (
    ALL_SESSIONS,
    TaskName,
    check_service_id,
    parse_session_name,
)
from llama_mesh.core.object_schema import check_object
from llama_mesh.core.paging import page_size
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import final_event_id, task_key
from llama_mesh.jetstream.live_events import LiveEvents
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)


class Tasks:
    """Tasks of every session; `shutting_down` ends waits and streams with UNAVAILABLE."""

    def __init__(
        self,
        state: MeshState,
        registry: ServiceRegistry,
        waiters: FinalEventWaiters,
        shutting_down: asyncio.Event,
        sessions: Sessions,
        live: LiveEvents,
    ) -> None:
        self.state = state
        self.live = live
        self.registry = registry
        self.waiters = waiters
        self.shutting_down = shutting_down
        self.sessions = sessions

    async def create_task(self, request: cp.CreateTaskRequest) -> cp.CreateTaskResponse:
        task = await create_task(
            self.state,
            self.registry,
            self.sessions,
            request.parent,
            request.task,
            request.request_id,
        )
        return cp.CreateTaskResponse(task=task)

    async def run_task(
        self, request: cp.RunTaskRequest, time_remaining: float | None
    ) -> cp.RunTaskResponse:
        """`time_remaining` is the call's: its deadline also bounds the task."""
        call_deadline = None if time_remaining is None else time.time() + time_remaining
        task_id = (
            new_task_id_for(request.request_id, request.parent.partition("/")[2])
            if request.request_id
            else new_task_id()
        )
        async with self.waiters.waiter(task_id) as done:
            task = await create_task(
                self.state,
                self.registry,
                self.sessions,
                request.parent,
                request.task,
                request.request_id,
                call_deadline=call_deadline,
                task_id=task_id,
            )
            if is_final(task.state):
                return cp.RunTaskResponse(task=task)
            task = await self._wait(TaskName.parse(task.name), done, None, task)
        return cp.RunTaskResponse(task=task)

    async def wait_task(self, request: cp.WaitTaskRequest) -> cp.WaitTaskResponse:
        name = TaskName.parse(request.name)
        timeout = proto_time.seconds(request.timeout) if request.HasField("timeout") else None
        if timeout is not None and timeout < 0:
            raise InvalidArgumentError("timeout must not be negative")
        async with self.waiters.waiter(name.task_id) as done:
            task = await self._wait(name, done, timeout)
        return cp.WaitTaskResponse(task=task)

    async def _wait(
        self,
        name: TaskName,
        done: asyncio.Event,
        timeout: float | None,
        task: resources_pb2.Task | None = None,
    ) -> resources_pb2.Task:
        """Wait for the final event, or `timeout` (WaitTask's: then the task as it is);
        `task` is the record if the caller just read it (inside `waiters.waiter`).

        A task whose deadline passes ends then: one no replica took is failed here,
        one a replica runs is stopped and failed by that replica (or, if it died, by
        the next delivery), and its final event ends this wait. So a caller gets the
        DEADLINE_EXCEEDED failure, never a task still RUNNING because the wait and
        the replica looked at the clock at the same moment.
        """
        if task is None:
            task = await self.state.tasks.get(task_key(name), str(name))
        if is_final(task.state):
            return task
        loop = asyncio.get_running_loop()
        give_up = None if timeout is None else loop.time() + timeout
        left = None if give_up is None else max(give_up - loop.time(), 0)
        until_deadline = (
            proto_time.epoch_seconds(task.deadline) - time.time()
            if task.HasField("deadline")
            else None
        )
        first = [t for t in (left, until_deadline) if t is not None]
        failpoint("tasks.waiting")
        found = await self._final(name, done, loop.time() + min(first) if first else None)
        if found is not None:
            return found
        task = await self.state.tasks.get(task_key(name), str(name))
        expired = task.HasField("deadline") and task.deadline.ToNanoseconds() <= time.time_ns()
        if is_final(task.state) or not expired:
            return task  # WaitTask's timeout passed first
        if task.state == PENDING:
            return await self._expire_pending(name)
        if give_up is None or give_up > loop.time():
            found = await self._final(name, done, give_up)
            if found is not None:
                return found
        return await self.state.tasks.get(task_key(name), str(name))

    async def _final(
        self, name: TaskName, done: asyncio.Event, until: float | None
    ) -> resources_pb2.Task | None:
        """The task's record once final, or None if loop time `until` comes first.
        `done` is set by its final event, or to read the record again (NATS
        reconnected: a final event published meanwhile reached no subscription)."""
        loop = asyncio.get_running_loop()
        while await self._until(done, None if until is None else until - loop.time()):
            done.clear()  # before the read: a final event from now on sets it again
            task = await self.state.tasks.get(task_key(name), str(name))
            if is_final(task.state):
                return task
        return None

    async def _until(self, done: asyncio.Event, limit: float | None) -> bool:
        """Wait for `done` at most `limit` seconds; whether it came."""
        try:
            async with asyncio.timeout(None if limit is None else max(limit, 0)):
                await until_set(done, self.shutting_down)
        except TimeoutError:
            return False
        return True

    async def _expire_pending(self, name: TaskName) -> resources_pb2.Task:
        """A task whose deadline passed before any replica took it fails here."""
        event = deadline_event(0, "the task's deadline passed before a replica took it")
        try:
            return await self.state.journal.record(name, event, event_id=final_event_id(name))
        except FailedPreconditionError:
            return await self.state.tasks.get(task_key(name), str(name))

    async def get_task(self, request: cp.GetTaskRequest) -> cp.GetTaskResponse:
        name = TaskName.parse(request.name)
        return cp.GetTaskResponse(task=await self.state.tasks.get(task_key(name), request.name))

    async def list_tasks(self, request: cp.ListTasksRequest) -> cp.ListTasksResponse:
        session_id = parse_session_name(request.parent, "parent", allow_all=True)
        if request.service:
            check_service_id(request.service, "service")
        size = page_size(request.page_size)
        if session_id != ALL_SESSIONS:
            await require_visible(self.state, request.parent, "parent")
            await self.state.sessions.get(session_id, request.parent)
        return await list_tasks(
            self.state,
            None if session_id == ALL_SESSIONS else session_id,
            request.service,
            set(request.states),
            size,
            request.page_token,
            SessionScope.of(self.state) if session_id == ALL_SESSIONS else None,
        )

    async def cancel_task(self, request: cp.CancelTaskRequest) -> cp.CancelTaskResponse:
        name = TaskName.parse(request.name)
        check_text("reason", request.reason, MAX_REASON_BYTES)
        task, finished = await cancel_task(self.state, name, request.reason)
        return cp.CancelTaskResponse(task=task, already_finished=finished)

    async def stream_task_events(
        self, request: cp.StreamTaskEventsRequest
    ) -> AsyncIterator[cp.StreamTaskEventsResponse]:
        name = TaskName.parse(request.name)
        if request.after_sequence < 0:
            raise InvalidArgumentError("after_sequence must not be negative")
        await require_visible(self.state, request.name)
        task = await self.state.tasks.get(task_key(name), request.name)
        topology = self.state.topology
        if is_final(task.state):
            try:
                last = await self.state.js.get_last_msg(
                    topology.event_stream, topology.final_event_subject(name.task_id)
                )
                last_seq = int(last.seq or 0)
            except JsNotFoundError:
                last_seq = 0
            # The record turns final just before its final event is published: a task
            # whose final event is missing either lost its events to age (they expire
            # `ttl` after they were published), or the event is on its way (then
            # stream and wait for it).
            kept = proto_time.seconds(task.ttl) if task.HasField("ttl") else None
            expired = last_seq == 0 and time.time() - proto_time.epoch_seconds(task.end_time) > (
                kept or topology.event_retention
            )
            if expired:
                # Nothing is kept: end with the final event rebuilt from the record.
                yield cp.StreamTaskEventsResponse(event=final_event(task))
                return
            if last_seq and last_seq <= request.after_sequence:
                return
        # Followed as the event stream republishes them, and what it stored before (or
        # meanwhile: after a reconnect or a new leader) read from it (live_events.py):
        # an ordered consumer here went silent for two missed heartbeats (10-20 s) when
        # the control plane's NATS connection came back.
        async with self.live.follow(
            name.task_id, after=request.after_sequence, history=True, stop=self.shutting_down
        ) as events:
            async for stored in events:
                event = resources_pb2.Envelope.FromString(stored.data).task_event
                event.sequence = stored.seq
                if event.state == WAITING:
                    await self._numbered(name, event.sequence)
                yield cp.StreamTaskEventsResponse(event=event)
                if is_final(event.state):
                    return
        raise UnavailableError("the control plane is shutting down; resume the stream")

    async def _numbered(self, name: TaskName, sequence: int) -> None:
        """Return once the task's record names the request for input at `sequence`.

        The journal publishes the request, then writes its sequence into the record
        (it is known only once published): a client that sees the event and reads the
        task must find that it waits for this very request. Waits on the record's
        writes (a subscription to its KV subject), for a few seconds at most.
        """
        subject = f"$KV.{self.state.topology.bucket('tasks')}.{task_key(name)}"
        sub = await self.state.nc.subscribe(subject)
        try:
            async with asyncio.timeout(5.0):
                while True:
                    found = await self.state.tasks.find(task_key(name))
                    if found is None or found[0].state != WAITING:
                        return
                    if found[0].input_request.sequence >= sequence:
                        return
                    await sub.next_msg(timeout=None)
        except TimeoutError:
            logger.warning("task %s: request %d not numbered in its record", name, sequence)
        finally:
            await sub.unsubscribe()

    async def send_task_event(self, request: cp.SendTaskEventRequest) -> cp.SendTaskEventResponse:
        name = TaskName.parse(request.name)
        if not request.type:
            raise InvalidArgumentError("type is required: the event type the task waits for")
        check_chars("type", request.type, MAX_TYPE_NAME_CHARS)
        check_bytes("payload", request.payload.ByteSize(), MAX_EVENT_BYTES)
        found = await self.state.tasks.find(task_key(name))
        if found is None:
            raise NotFoundError(f"task {request.name!r} not found")
        task = found[0]
        if task.state != WAITING:
            # Refused, unless this call repeats one whose answer was taken.
            task = await answer_task(self.state, name, found, request.type, request.payload)
            return cp.SendTaskEventResponse(task=task)
        service = await self.registry.lookup(task.service)
        accepted = list(task.input_request.accepted_event_types) or list(
            service.accepted_event_types
        )
        short = request.type.rpartition(".")[2]
        if accepted and request.type not in accepted and short not in accepted:
            raise InvalidArgumentError(
                f"task {request.name!r} does not accept events of type {request.type!r}; "
                f"it accepts {accepted}"
            )
        schema = service.event_schemas.get(request.type) or service.event_schemas.get(short)
        if schema is not None:
            # Checked before the task takes it: an answer its event cannot be built
            # from would fail the task later, with nothing the person could fix.
            check_object(
                json_format.MessageToDict(request.payload),
                json_format.MessageToDict(schema),
                "payload",
                f"event {short}",
            )

        task = await answer_task(self.state, name, found, request.type, request.payload)
        return cp.SendTaskEventResponse(task=task)
