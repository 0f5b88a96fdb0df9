"""The ControlPlane API: services, sessions and tasks, with all state in JetStream.

No state of record is kept here, so any number of control-plane replicas serve the
same mesh (each keeps only caches it can rebuild: the service registry from a KV
watch, and the calls waiting on it). A task's journey through this module:
CreateTask validates and writes the record (PENDING), then publishes the assignment
on the service's task subject with Nats-Msg-Id = task id; WaitTask registers a
waiter that the task's last event (on `events.{task}.end`) wakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api as js_api
from nats.js.errors import NotFoundError as JsNotFoundError

from llama_mesh.core import proto_time
from llama_mesh.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from llama_mesh.core.lifecycle import (
    ACTIVE_STATES,
    PENDING,
    RUNNING,
    WAITING,
    cancelled_event,
    deadline_event,
    is_final,
)
from llama_mesh.core.names import (
    ALL_SESSIONS,
    TaskName,
    check_service_id,
    check_session_id,
    new_id,
    parse_service_name,
    parse_session_name,
    session_name,
)
from llama_mesh.core.paging import page_size, paginate
from llama_mesh.jetstream.buckets import Unchanged, keys_matching
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import task_key
from llama_mesh.rpc.server import ServicerContext
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import control_plane_pb2_grpc, resources_pb2

logger = logging.getLogger(__name__)


DEFAULT_LEASE = 10.0
MAX_INPUT_BYTES = 1 << 20
MAX_REQUEST_ID = 128


def new_task_id() -> str:
    """Ids sort by creation time, so listing newest-first needs no extra index."""
    return f"{time.time_ns():016x}{new_id()[:8]}"


def live_replicas(service: resources_pb2.Service, at: float | None = None) -> None:
    """Drop replicas whose lease has expired (in place)."""
    cutoff = at if at is not None else time.time()
    live = [r for r in service.replicas if proto_time.epoch_seconds(r.lease_expire_time) > cutoff]
    del service.replicas[:]
    service.replicas.extend(live)


def new_task_id_for(request_id: str, session_id: str) -> str:
    return hashlib.sha256(f"{session_id}\0{request_id}".encode()).hexdigest()[:40]


class ControlPlaneAPIServicer(control_plane_pb2_grpc.ControlPlaneAPIServicer):
    """The ControlPlaneAPI servicer."""

    def __init__(self, state: MeshState) -> None:
        self.state = state
        # Set as the server shuts down: waits and streams end with UNAVAILABLE.
        self.shutting_down = asyncio.Event()
        # Calls waiting for a task to finish, by task id; woken by _on_final.
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._finals: Subscription | None = None
        # Registered services, kept current by a KV watch: CreateTask reads them for
        # every task, and they change only when replicas come, go or renew.
        self._services: dict[str, resources_pb2.Service] = {}
        self._services_watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen for the last event of every task (one subscription for all waits)
        and watch the service registry."""
        self._finals = await self.state.nc.subscribe(
            self.state.topology.final_events, cb=self._on_final
        )
        watcher = await self.state.services.kv.watch(">")
        self._services_watch = asyncio.create_task(self._watch_services(watcher))

    async def stop(self) -> None:
        if self._services_watch is not None:
            self._services_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._services_watch
            self._services_watch = None
        if self._finals is not None:
            with contextlib.suppress(Exception):
                await self._finals.unsubscribe()
            self._finals = None

    async def _watch_services(self, watcher: Any) -> None:
        try:
            async for entry in watcher:
                if entry is None:  # end of the initial values
                    continue
                if entry.operation is not None or not entry.value:  # deleted or purged
                    self._services.pop(entry.key, None)
                else:
                    self._services[entry.key] = resources_pb2.Service.FromString(entry.value)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    async def _on_final(self, msg: Msg) -> None:
        task_id = msg.subject.split(".")[-2]
        for done in self._waiters.get(task_id, ()):
            done.set()

    async def _until(self, done: asyncio.Event) -> None:
        """Wait for `done`; UnavailableError if the server shuts down first."""
        stop = asyncio.ensure_future(self.shutting_down.wait())
        finished = asyncio.ensure_future(done.wait())
        try:
            await asyncio.wait({stop, finished}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            finished.cancel()
        if not done.is_set():
            raise UnavailableError("the control plane is shutting down; call again")

    async def _until_shutdown(self, items: AsyncIterator[Msg]) -> AsyncIterator[Msg]:
        """Items of `items`; UnavailableError if the server shuts down first."""
        stop = asyncio.ensure_future(self.shutting_down.wait())
        try:
            while True:
                item = asyncio.ensure_future(anext(items))
                await asyncio.wait({stop, item}, return_when=asyncio.FIRST_COMPLETED)
                if not item.done():
                    item.cancel()
                    raise UnavailableError("the control plane is shutting down; resume the stream")
                try:
                    yield item.result()
                except StopAsyncIteration:
                    return
        finally:
            stop.cancel()

    # ----------------------------------------------------------------- services

    async def RegisterService(
        self, request: cp.RegisterServiceRequest, context: ServicerContext
    ) -> cp.RegisterServiceResponse:
        if not request.HasField("service"):
            raise InvalidArgumentError("service is required")
        if not request.HasField("replica") or not request.replica.replica_id:
            raise InvalidArgumentError("replica.replica_id is required")
        service_id = parse_service_name(request.service.name, "service.name")
        lease = proto_time.seconds(request.lease_duration) or DEFAULT_LEASE
        if lease < 0:
            raise InvalidArgumentError("lease_duration must not be negative")
        expire = proto_time.timestamp(time.time() + lease)
        replica = resources_pb2.Replica()
        replica.CopyFrom(request.replica)
        replica.lease_expire_time.CopyFrom(expire)
        if replica.state == resources_pb2.REPLICA_STATE_UNSPECIFIED:
            replica.state = resources_pb2.REPLICA_STATE_SERVING
        stamp = proto_time.now()

        def change(service: resources_pb2.Service) -> None:
            replicas = [r for r in service.replicas if r.replica_id != replica.replica_id]
            create_time = resources_pb2.Service().create_time
            create_time.CopyFrom(service.create_time)
            service.CopyFrom(request.service)
            service.create_time.CopyFrom(create_time)
            del service.replicas[:]
            service.replicas.extend([*replicas, replica])
            live_replicas(service)
            service.task_subject = self.state.topology.task_subject(service_id)
            service.update_time.CopyFrom(stamp)

        fresh = resources_pb2.Service()
        change(fresh)
        fresh.create_time.CopyFrom(stamp)
        if await self.state.services.create(service_id, fresh) is None:
            service = await self.state.services.mutate(service_id, request.service.name, change)
        else:
            service = fresh
        logger.info("service %s: replica %s registered", service.name, replica.replica_id)
        return cp.RegisterServiceResponse(
            service=service,
            lease_expire_time=expire,
            queue_config=self.state.topology.queue_config(self.state.nats_urls),
        )

    async def RenewServiceLease(
        self, request: cp.RenewServiceLeaseRequest, context: ServicerContext
    ) -> cp.RenewServiceLeaseResponse:
        service_id = parse_service_name(request.name)
        if not request.replica_id:
            raise InvalidArgumentError("replica_id is required")
        lease = proto_time.seconds(request.lease_duration) or DEFAULT_LEASE
        if lease < 0:
            raise InvalidArgumentError("lease_duration must not be negative")
        renewed: list[timestamp_pb2.Timestamp] = []

        def change(service: resources_pb2.Service) -> None:
            at = time.time()
            live_replicas(service, at)
            for replica in service.replicas:
                if replica.replica_id == request.replica_id:
                    replica.lease_expire_time.CopyFrom(proto_time.timestamp(at + lease))
                    replica.running_task_count = request.running_task_count
                    if request.state:
                        replica.state = request.state
                    renewed.append(replica.lease_expire_time)
                    return
            raise NotFoundError(
                f"replica {request.replica_id!r} of {request.name!r} is not registered "
                "(its lease may have expired): register again"
            )

        await self.state.services.mutate(service_id, request.name, change)
        return cp.RenewServiceLeaseResponse(lease_expire_time=renewed[-1])

    async def DeregisterService(
        self, request: cp.DeregisterServiceRequest, context: ServicerContext
    ) -> cp.DeregisterServiceResponse:
        service_id = parse_service_name(request.name)
        if not request.replica_id:
            await self.state.services.get(service_id, request.name)
            await self.state.services.delete(service_id)
            logger.info("service %s deregistered", request.name)
            return cp.DeregisterServiceResponse()

        def change(service: resources_pb2.Service) -> None:
            kept = [r for r in service.replicas if r.replica_id != request.replica_id]
            if len(kept) == len(service.replicas):
                raise NotFoundError(
                    f"replica {request.replica_id!r} of {request.name!r} is not registered"
                )
            del service.replicas[:]
            service.replicas.extend(kept)
            service.update_time.CopyFrom(proto_time.now())

        await self.state.services.mutate(service_id, request.name, change)
        logger.info("service %s: replica %s left", request.name, request.replica_id)
        return cp.DeregisterServiceResponse()

    async def GetService(
        self, request: cp.GetServiceRequest, context: ServicerContext
    ) -> cp.GetServiceResponse:
        service_id = parse_service_name(request.name)
        service = await self.state.services.get(service_id, request.name)
        live_replicas(service)
        return cp.GetServiceResponse(service=service)

    async def ListServices(
        self, request: cp.ListServicesRequest, context: ServicerContext
    ) -> cp.ListServicesResponse:
        size = page_size(request.page_size)
        records = await self.state.services.scan()
        page = paginate(records, size, request.page_token)
        for service in page.items:
            live_replicas(service)
        return cp.ListServicesResponse(services=page.items, next_page_token=page.next_page_token)

    # ----------------------------------------------------------------- sessions

    async def CreateSession(
        self, request: cp.CreateSessionRequest, context: ServicerContext
    ) -> cp.CreateSessionResponse:
        session_id = check_session_id(request.session_id) if request.session_id else new_id()
        session = resources_pb2.Session()
        session.CopyFrom(request.session)
        session.name = session_name(session_id)
        if session.overlap_policy == resources_pb2.OVERLAP_POLICY_UNSPECIFIED:
            session.overlap_policy = resources_pb2.OVERLAP_POLICY_QUEUE
        stamp = proto_time.now()
        session.create_time.CopyFrom(stamp)
        session.update_time.CopyFrom(stamp)
        if await self.state.sessions.create(session_id, session) is not None:
            logger.info("session %s created", session.name)
            return cp.CreateSessionResponse(session=session, created=True)
        if not request.allow_existing:
            raise AlreadyExistsError(
                f"session {session.name!r} exists already; set allow_existing to get it"
            )
        existing = await self.state.sessions.get(session_id, session.name)
        return cp.CreateSessionResponse(session=existing, created=False)

    async def GetSession(
        self, request: cp.GetSessionRequest, context: ServicerContext
    ) -> cp.GetSessionResponse:
        session_id = parse_session_name(request.name)
        return cp.GetSessionResponse(
            session=await self.state.sessions.get(session_id, request.name)
        )

    async def ListSessions(
        self, request: cp.ListSessionsRequest, context: ServicerContext
    ) -> cp.ListSessionsResponse:
        size = page_size(request.page_size)
        page = paginate(await self.state.sessions.scan(), size, request.page_token)
        return cp.ListSessionsResponse(sessions=page.items, next_page_token=page.next_page_token)

    async def DeleteSession(
        self, request: cp.DeleteSessionRequest, context: ServicerContext
    ) -> cp.DeleteSessionResponse:
        session_id = parse_session_name(request.name)
        await self.state.sessions.get(session_id, request.name)
        tasks = await self.state.tasks.scan(f"{session_id}.*")
        active = [t for _, t in tasks if t.state in ACTIVE_STATES]
        if active and not request.force:
            raise FailedPreconditionError(
                f"session {request.name!r} has {len(active)} active task(s), e.g. "
                f"{active[0].name!r}: cancel them or delete with force"
            )
        for task in active:
            await self._cancel(TaskName.parse(task.name), "session deleted")
        for key, _ in tasks:
            await self.state.tasks.delete(key)
        for kv in (self.state.contexts, self.state.locks):
            for key in await keys_matching(kv, f"{session_id}.*"):
                await kv.delete(key)
        await self.state.sessions.delete(session_id)
        logger.info("session %s deleted", request.name)
        return cp.DeleteSessionResponse()

    # ----------------------------------------------------------------- tasks

    async def _service(self, service_id: str) -> resources_pb2.Service:
        cached = self._services.get(service_id)
        if cached is not None:
            return cached
        # Not seen by the watch (yet): a replica may have registered a moment ago.
        found = await self.state.services.find(service_id)
        if found is None:
            raise NotFoundError(
                f"service {service_id!r} is not registered: deploy it first "
                "(ListServices shows what is registered)"
            )
        return found[0]

    def _check_input(self, task: resources_pb2.Task, service: resources_pb2.Service) -> None:
        size = task.input.ByteSize()
        if size > MAX_INPUT_BYTES:
            raise InvalidArgumentError(
                f"task.input is {size} bytes, over the limit of {MAX_INPUT_BYTES} bytes: "
                "pass large data by reference"
            )
        schema = json_format.MessageToDict(service.input_schema)
        missing = [k for k in schema.get("required", []) if k not in task.input.fields]
        if missing:
            raise InvalidArgumentError(
                f"task.input lacks required field(s) {missing} of service {task.service!r}"
            )
        if schema.get("additionalProperties") is False:
            known = set(schema.get("properties", {}))
            unknown = sorted(k for k in task.input.fields if k not in known)
            if unknown:
                raise InvalidArgumentError(
                    f"task.input has unknown field(s) {unknown}; service {task.service!r} "
                    f"accepts {sorted(known)}"
                )

    async def _create(
        self,
        parent: str,
        requested: resources_pb2.Task,
        request_id: str,
        context: ServicerContext,
        *,
        bound_by_call: bool,
        task_id: str = "",
    ) -> resources_pb2.Task:
        """Create a task; `task_id` if the caller chose it already (as RunTask does, to
        wait on it before it exists), else derived from `request_id` or new."""
        session_id = parse_session_name(parent, "parent")
        if not requested.service:
            raise InvalidArgumentError('task.service is required (e.g. "echo")')
        service_id = check_service_id(requested.service, "task.service")
        if len(request_id) > MAX_REQUEST_ID or not request_id.isprintable():
            raise InvalidArgumentError(
                f"request_id must be at most {MAX_REQUEST_ID} printable characters"
            )
        if requested.parent_task:
            TaskName.parse(requested.parent_task, "task.parent_task")
        timeout = proto_time.seconds(requested.timeout)
        if timeout < 0:
            raise InvalidArgumentError("task.timeout must not be negative")
        session, service = await asyncio.gather(
            self.state.sessions.get(session_id, parent), self._service(service_id)
        )
        self._check_input(requested, service)

        if not task_id:
            # With a request id, the id follows from it: a repeated request finds the
            # task its first call created when it writes the record below.
            task_id = new_task_id_for(request_id, session_id) if request_id else new_task_id()
        name = TaskName(session_id, task_id)

        if session.overlap_policy == resources_pb2.OVERLAP_POLICY_REJECT:
            busy = [
                t
                for _, t in await self.state.tasks.scan(f"{session_id}.*")
                if t.service == service_id and t.state in ACTIVE_STATES
            ]
            if busy:
                raise FailedPreconditionError(
                    f"session {parent!r} rejects overlapping tasks and {busy[0].name!r} "
                    f"of service {service_id!r} is still active"
                )

        task = resources_pb2.Task()
        task.CopyFrom(requested)
        task.name = str(name)
        task.state = PENDING
        task.ClearField("timeout")
        for field in ("result", "error", "input_request", "start_time", "end_time"):
            task.ClearField(field)
        task.attempt_count = 0
        task.cancel_requested = False
        task.replica_id = ""
        policy = resources_pb2.RetryPolicy()
        policy.CopyFrom(service.retry_policy)
        policy.MergeFrom(requested.retry_policy)
        task.retry_policy.CopyFrom(policy)
        if not timeout and service.HasField("default_timeout"):
            timeout = proto_time.seconds(service.default_timeout)
        deadlines = []
        if timeout:
            deadlines.append(time.time() + timeout)
        remaining = context.time_remaining() if bound_by_call else None
        if remaining is not None:
            deadlines.append(time.time() + remaining)
        if deadlines:
            task.deadline.CopyFrom(proto_time.timestamp(min(deadlines)))
        stamp = proto_time.now()
        task.create_time.CopyFrom(stamp)
        task.update_time.CopyFrom(stamp)

        if await self.state.tasks.create(task_key(name), task) is None:
            # The same request_id was seen before (or a concurrent call won the race).
            return await self.state.tasks.get(task_key(name), str(name))
        envelope = resources_pb2.Envelope(
            id=task_id, task_assignment=resources_pb2.TaskAssignment(task=task)
        )
        envelope.publish_time.CopyFrom(stamp)
        await self.state.js.publish(
            self.state.topology.task_subject(service_id),
            envelope.SerializeToString(),
            headers={"Nats-Msg-Id": task_id},
        )
        logger.info("task %s created for service %s", name, service_id)
        return task

    async def CreateTask(
        self, request: cp.CreateTaskRequest, context: ServicerContext
    ) -> cp.CreateTaskResponse:
        task = await self._create(
            request.parent, request.task, request.request_id, context, bound_by_call=False
        )
        return cp.CreateTaskResponse(task=task)

    @contextlib.asynccontextmanager
    async def _final_waiter(self, task_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set when the task's last event is published. Enter it before
        reading the task's record: either the record is final, or the event comes."""
        done = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(done)
        try:
            yield done
        finally:
            waiting = self._waiters.get(task_id)
            if waiting is not None:
                waiting.discard(done)
                if not waiting:
                    del self._waiters[task_id]

    async def _wait(
        self,
        name: TaskName,
        done: asyncio.Event,
        timeout: float | None,
        task: resources_pb2.Task | None = None,
    ) -> resources_pb2.Task:
        """Wait for the final event; `task` is the record if the caller just read it
        (inside `_final_waiter`)."""
        if task is None:
            task = await self.state.tasks.get(task_key(name), str(name))
        if is_final(task.state):
            return task
        limits = [t for t in (timeout,) if t is not None]
        if task.HasField("deadline"):
            limits.append(proto_time.epoch_seconds(task.deadline) - time.time())
        try:
            async with asyncio.timeout(max(min(limits), 0) if limits else None):
                await self._until(done)
        except TimeoutError:
            pass
        task = await self.state.tasks.get(task_key(name), str(name))
        expired = task.HasField("deadline") and task.deadline.ToNanoseconds() <= time.time_ns()
        if task.state == PENDING and expired:
            task = await self._expire_pending(name)
        return task

    async def _expire_pending(self, name: TaskName) -> resources_pb2.Task:
        """A task whose deadline passed before any replica took it fails here."""
        event = deadline_event(0, "the task's deadline passed before a replica took it")
        try:
            return await self.state.journal.record(name, event, event_id=f"{name.task_id}.final")
        except FailedPreconditionError:
            return await self.state.tasks.get(task_key(name), str(name))

    async def RunTask(
        self, request: cp.RunTaskRequest, context: ServicerContext
    ) -> cp.RunTaskResponse:
        task_id = (
            new_task_id_for(request.request_id, request.parent.partition("/")[2])
            if request.request_id
            else new_task_id()
        )
        async with self._final_waiter(task_id) as done:
            task = await self._create(
                request.parent,
                request.task,
                request.request_id,
                context,
                bound_by_call=True,
                task_id=task_id,
            )
            if is_final(task.state):
                return cp.RunTaskResponse(task=task)
            task = await self._wait(TaskName.parse(task.name), done, None, task)
        return cp.RunTaskResponse(task=task)

    async def WaitTask(
        self, request: cp.WaitTaskRequest, context: ServicerContext
    ) -> cp.WaitTaskResponse:
        name = TaskName.parse(request.name)
        timeout = proto_time.seconds(request.timeout) if request.HasField("timeout") else None
        if timeout is not None and timeout < 0:
            raise InvalidArgumentError("timeout must not be negative")
        async with self._final_waiter(name.task_id) as done:
            task = await self._wait(name, done, timeout)
        return cp.WaitTaskResponse(task=task)

    async def GetTask(
        self, request: cp.GetTaskRequest, context: ServicerContext
    ) -> cp.GetTaskResponse:
        name = TaskName.parse(request.name)
        return cp.GetTaskResponse(task=await self.state.tasks.get(task_key(name), request.name))

    async def ListTasks(
        self, request: cp.ListTasksRequest, context: ServicerContext
    ) -> cp.ListTasksResponse:
        session_id = parse_session_name(request.parent, "parent", allow_all=True)
        if request.service:
            check_service_id(request.service, "service")
        size = page_size(request.page_size)
        if session_id != ALL_SESSIONS:
            await self.state.sessions.get(session_id, request.parent)
        pattern = "*.*" if session_id == ALL_SESSIONS else f"{session_id}.*"
        states = set(request.states)
        records = [
            (key.partition(".")[2], task)
            for key, task in await self.state.tasks.scan(pattern)
            if (not states or task.state in states)
            and (not request.service or task.service == request.service)
        ]
        page = paginate(records, size, request.page_token, descending=True)
        return cp.ListTasksResponse(tasks=page.items, next_page_token=page.next_page_token)

    async def _cancel(self, name: TaskName, reason: str) -> tuple[resources_pb2.Task, bool]:
        """Cancel a task; (task, already_finished)."""
        reason = reason or "cancelled by client"
        finished: list[bool] = []
        cancel_now: list[bool] = []

        def change(task: resources_pb2.Task) -> None:
            if is_final(task.state):
                finished.append(True)
                raise Unchanged
            if task.state == PENDING:
                cancel_now.append(True)
                raise Unchanged
            if task.cancel_requested:
                raise Unchanged
            task.cancel_requested = True
            task.update_time.CopyFrom(proto_time.now())

        task = await self.state.tasks.mutate(task_key(name), str(name), change)
        if finished:
            return task, True
        if cancel_now:
            event = cancelled_event(task.attempt_count, reason)
            try:
                task = await self.state.journal.record(
                    name, event, event_id=f"{name.task_id}.final"
                )
            except FailedPreconditionError:
                return await self.state.tasks.get(task_key(name), str(name)), True
            # It was PENDING; a replica may have taken it meanwhile: tell it too.
        signal = resources_pb2.Envelope(
            id=new_id(),
            task_cancellation=resources_pb2.TaskCancellation(task=str(name), reason=reason),
        )
        await self.state.nc.publish(
            self.state.topology.cancel_subject(name.task_id), signal.SerializeToString()
        )
        for _, child in await self.state.tasks.scan(f"{name.session_id}.*"):
            if child.parent_task == str(name) and child.state in ACTIVE_STATES:
                await self._cancel(TaskName.parse(child.name), "parent task cancelled")
        logger.info("task %s: cancel requested (%s)", name, reason)
        return task, False

    async def CancelTask(
        self, request: cp.CancelTaskRequest, context: ServicerContext
    ) -> cp.CancelTaskResponse:
        name = TaskName.parse(request.name)
        task, finished = await self._cancel(name, request.reason)
        return cp.CancelTaskResponse(task=task, already_finished=finished)

    async def StreamTaskEvents(
        self, request: cp.StreamTaskEventsRequest, context: ServicerContext
    ) -> AsyncIterator[cp.StreamTaskEventsResponse]:
        name = TaskName.parse(request.name)
        if request.after_sequence < 0:
            raise InvalidArgumentError("after_sequence must not be negative")
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
            if last_seq <= request.after_sequence:
                # Nothing newer is kept: end with the final event rebuilt from the record.
                if last_seq == 0:
                    event = await self.state.journal.finish_event(task)
                    yield cp.StreamTaskEventsResponse(event=event)
                return
        if request.after_sequence:
            policy = js_api.DeliverPolicy.BY_START_SEQUENCE
            start: int | None = request.after_sequence + 1
        else:
            policy, start = js_api.DeliverPolicy.ALL, None
        sub = await self.state.js.subscribe(
            topology.task_events(name.task_id),
            ordered_consumer=True,
            deliver_policy=policy,
            config=js_api.ConsumerConfig(opt_start_seq=start) if start else None,
            stream=self.state.topology.event_stream,
        )
        try:
            async for msg in self._until_shutdown(sub.messages):
                envelope = resources_pb2.Envelope.FromString(msg.data)
                event = envelope.task_event
                event.sequence = msg.metadata.sequence.stream
                yield cp.StreamTaskEventsResponse(event=event)
                if is_final(event.state):
                    return
        finally:
            await sub.unsubscribe()

    async def SendTaskEvent(
        self, request: cp.SendTaskEventRequest, context: ServicerContext
    ) -> cp.SendTaskEventResponse:
        name = TaskName.parse(request.name)
        if not request.type:
            raise InvalidArgumentError("type is required: the event type the task waits for")
        found = await self.state.tasks.find(task_key(name))
        if found is None:
            raise NotFoundError(f"task {request.name!r} not found")
        task = found[0]
        if task.state != WAITING:
            raise FailedPreconditionError(
                f"task {request.name!r} is not waiting for input "
                f"(state {resources_pb2.TaskState.Name(task.state)})"
            )
        service = await self._service(task.service)
        accepted = list(task.input_request.accepted_event_types) or list(
            service.accepted_event_types
        )
        short = request.type.rpartition(".")[2]
        if accepted and request.type not in accepted and short not in accepted:
            raise InvalidArgumentError(
                f"task {request.name!r} does not accept events of type {request.type!r}; "
                f"it accepts {accepted}"
            )

        def change(current: resources_pb2.Task) -> None:
            if current.state != WAITING:
                raise FailedPreconditionError(
                    f"task {request.name!r} is not waiting for input "
                    f"(state {resources_pb2.TaskState.Name(current.state)})"
                )
            current.state = RUNNING
            current.ClearField("input_request")
            current.update_time.CopyFrom(proto_time.now())

        # Flip to RUNNING first so that two answers to one request cannot both pass.
        task, _ = await self.state.tasks.mutate_from(task_key(name), request.name, change, found)
        envelope = resources_pb2.Envelope(
            id=new_id(),
            task_input=resources_pb2.TaskInput(
                task=request.name, type=request.type, payload=request.payload
            ),
        )
        await self.state.js.publish(
            self.state.topology.input_subject(name.task_id),
            envelope.SerializeToString(),
            headers={"Nats-Msg-Id": envelope.id},
        )
        logger.info("task %s: event %s sent", name, request.type)
        return cp.SendTaskEventResponse(task=task)

    async def GetQueueConfig(
        self, request: cp.GetQueueConfigRequest, context: ServicerContext
    ) -> cp.GetQueueConfigResponse:
        return cp.GetQueueConfigResponse(
            queue_config=self.state.topology.queue_config(self.state.nats_urls)
        )
