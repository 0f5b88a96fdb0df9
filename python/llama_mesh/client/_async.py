"""The Python client: sessions, tasks and their events over one gRPC channel.

    async with AsyncClient("127.0.0.1:50051") as client:
        session = await client.create_session()
        print(await session.run("echo", arg1="hello"))      # 'hello_result'

        task = await session.create_task("counter")
        async for event in task.events():
            print(event.sequence, event.type, event.payload)

Failed calls raise the MeshError subclass of their status code (errors.py); a task
that ends FAILED or CANCELLED raises TaskFailedError / TaskCancelledError from
``run`` and ``TaskHandle.result``. A call cut off because the control plane went
away (UNAVAILABLE) is retried once the channel is ready again; task creation carries
a request_id so that a retry never creates a second task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from llama_mesh.client._api_keys import ApiKeys
from llama_mesh.client._credentials import Credentials
from llama_mesh.client._task_view import StreamedEvent, task_result
from llama_mesh.core import proto_time
from llama_mesh.core.errors import (
    UnavailableError,
    error_for_code,
)
from llama_mesh.core.json_values import to_struct
from llama_mesh.core.lifecycle import FINAL_STATES
from llama_mesh.core.names import new_id, parse_session_name, service_name, session_name
from llama_mesh.v1 import auth_pb2_grpc, control_plane_pb2_grpc, resources_pb2
from llama_mesh.v1 import control_plane_pb2 as cp

logger = logging.getLogger(__name__)

T = TypeVar("T")
Task = resources_pb2.Task
TaskState = resources_pb2.TaskState

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 << 20),
    ("grpc.max_send_message_length", 16 << 20),
    ("grpc.keepalive_time_ms", 30_000),
]


def _session_name(session: str) -> str:
    """A session given by id or by name, as its name."""
    return session if session.startswith("sessions/") else session_name(session)


def _retryable(err: grpc.aio.AioRpcError, unavailable: bool, cancelled: bool) -> bool:
    code = err.code()
    return (code == grpc.StatusCode.UNAVAILABLE and unavailable) or (
        code == grpc.StatusCode.CANCELLED and cancelled
    )


class AsyncClient:
    """Async client of the ControlPlane API."""

    _MAX_BACKOFF = 2.0

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        timeout: float = 30.0,
        reconnect_timeout: float = 30.0,
        metadata: list[tuple[str, str]] | None = None,
        token: str | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        """`credentials` (a token, TLS files) default to the environment's
        (LLAMA_MESH_TOKEN, LLAMA_MESH_CA_FILE, …: see Credentials); `token` overrides
        the token alone."""
        self.address = address
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        self.credentials = (credentials or Credentials.from_env()).with_token(token)
        self._metadata = [*self.credentials.metadata(), *(metadata or [])]
        self._channel = self.credentials.channel(address, CHANNEL_OPTIONS)
        self.stub = control_plane_pb2_grpc.ControlPlaneAPIStub(self._channel)
        # API keys (admins) and `whoami` (anyone).
        self.api_keys = ApiKeys(auth_pb2_grpc.AuthAPIStub(self._channel), self.call)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _reconnected(self, err: grpc.aio.AioRpcError, attempt: int = 1) -> None:
        """Wait until the call is worth repeating: the channel is ready, and (when the
        control plane answered UNAVAILABLE itself, e.g. while NATS elects a leader) a
        backoff has passed."""
        try:
            async with asyncio.timeout(self.reconnect_timeout):
                await self._channel.channel_ready()
                await asyncio.sleep(min(0.05 * 2 ** (attempt - 1), self._MAX_BACKOFF))
        except TimeoutError:
            raise UnavailableError(
                f"the control plane at {self.address} is unreachable: {err.details()}"
            ) from err

    async def call(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        *,
        timeout: float | None = None,
        retry_unavailable: bool = True,
        idempotent: bool = False,
        deadline: bool = True,
    ) -> T:
        """Invoke a unary RPC; map its error; retry UNAVAILABLE once reconnected.

        A CANCELLED status this client did not cause comes from a server shutting
        down; `idempotent` calls are retried then too. `deadline=False` sends no
        deadline (RunTask's deadline would bound its task).
        """
        attempt = 0
        while True:
            try:
                return await method(
                    request,
                    timeout=(timeout or self.timeout) if deadline else None,
                    metadata=self._metadata,
                )
            except grpc.aio.AioRpcError as err:
                if _retryable(err, retry_unavailable, idempotent) and (
                    attempt * self._MAX_BACKOFF < self.reconnect_timeout
                ):
                    attempt += 1
                    await self._reconnected(err, attempt)
                    continue
                raise error_for_code(err.code(), err.details() or str(err.code())) from err

    # ------------------------------------------------------------ sessions

    async def create_session(
        self,
        session_id: str | None = None,
        *,
        labels: dict[str, str] | None = None,
        reject_overlap: bool = False,
        token_budget: int = 0,
    ) -> AsyncSession:
        """Create a session (ALREADY_EXISTS if `session_id` is taken).

        `token_budget` caps the tokens its tasks' LLM calls may use in all (0: no cap).
        """
        return await self._create_session(
            session_id, labels, reject_overlap, token_budget, allow_existing=False
        )

    async def get_or_create_session(self, session_id: str, **kwargs: Any) -> AsyncSession:
        return await self._create_session(
            session_id,
            kwargs.get("labels"),
            kwargs.get("reject_overlap", False),
            kwargs.get("token_budget", 0),
            allow_existing=True,
        )

    async def _create_session(
        self,
        session_id: str | None,
        labels: dict[str, str] | None,
        reject_overlap: bool,
        token_budget: int,
        *,
        allow_existing: bool,
    ) -> AsyncSession:
        policy = (
            resources_pb2.OVERLAP_POLICY_REJECT
            if reject_overlap
            else resources_pb2.OVERLAP_POLICY_QUEUE
        )
        response = await self.call(
            self.stub.CreateSession,
            cp.CreateSessionRequest(
                session=resources_pb2.Session(
                    labels=labels or {}, overlap_policy=policy, token_budget=token_budget
                ),
                session_id=session_id or "",
                allow_existing=allow_existing,
            ),
        )
        return AsyncSession(self, response.session)

    async def get_session(self, session: str) -> AsyncSession:
        """A session by id or name (NotFoundError if it does not exist)."""
        name = _session_name(session)
        response = await self.call(self.stub.GetSession, cp.GetSessionRequest(name=name))
        return AsyncSession(self, response.session)

    async def list_sessions(self) -> list[resources_pb2.Session]:
        return await self._all(
            lambda token: self.call(
                self.stub.ListSessions, cp.ListSessionsRequest(page_size=1000, page_token=token)
            ),
            "sessions",
        )

    async def delete_session(self, session: str, *, force: bool = False) -> None:
        name = _session_name(session)
        await self.call(self.stub.DeleteSession, cp.DeleteSessionRequest(name=name, force=force))

    async def _all(
        self, page: Callable[[str], Awaitable[Any]], field: str, limit: int | None = None
    ) -> list[Any]:
        """Items of every page (a page may hold fewer than asked while more follow),
        or only the first `limit`."""
        items: list[Any] = []
        token = ""
        while True:
            response = await page(token)
            items.extend(getattr(response, field))
            token = response.next_page_token
            if not token or (limit is not None and len(items) >= limit):
                return items[:limit]

    # ------------------------------------------------------------ services

    async def list_services(self) -> list[resources_pb2.Service]:
        return await self._all(
            lambda token: self.call(
                self.stub.ListServices, cp.ListServicesRequest(page_size=1000, page_token=token)
            ),
            "services",
        )

    async def get_service(self, service: str) -> resources_pb2.Service:
        name = service if service.startswith("services/") else service_name(service)
        response = await self.call(self.stub.GetService, cp.GetServiceRequest(name=name))
        found: resources_pb2.Service = response.service
        return found

    # ------------------------------------------------------------ tasks

    def task(self, name: str) -> TaskHandle:
        """A handle on an existing task, by name."""
        return TaskHandle(self, name)

    async def get_task(self, name: str) -> Task:
        response = await self.call(self.stub.GetTask, cp.GetTaskRequest(name=name), idempotent=True)
        task: Task = response.task
        return task

    async def list_tasks(
        self,
        session: str = "-",
        *,
        states: list[resources_pb2.TaskState.ValueType] | None = None,
        service: str = "",
        limit: int | None = None,
    ) -> list[Task]:
        """Tasks of a session (all sessions with "-"), newest first: all of them, or
        the newest `limit` (asking only for the pages that hold them)."""
        parent = _session_name(session)
        size = min(limit, 1000) if limit else 1000
        return await self._all(
            lambda token: self.call(
                self.stub.ListTasks,
                cp.ListTasksRequest(
                    parent=parent,
                    states=states or [],
                    service=service,
                    page_size=size,
                    page_token=token,
                ),
            ),
            "tasks",
            limit,
        )

    async def inbox(self) -> list[Task]:
        """Every task, in every session, that waits for input from a person."""
        return await self.list_tasks("-", states=[resources_pb2.TASK_STATE_WAITING_FOR_INPUT])

    async def answer(self, task: str, response: str) -> Task:
        """Answer a task that waits for a person (a HumanResponseEvent with `response`)."""
        return await self.task(task).send_event("HumanResponseEvent", response=response)

    async def run(
        self,
        user_msg: str | None = None,
        *,
        session: str | None = None,
        timeout: float | None = None,
        input: dict[str, Any] | None = None,
    ) -> Any:
        """Run a task that names no service: the deployed orchestrator routes it.

            print(await client.run("What is the secret fact?"))

        The task's input is ``{"user_msg": user_msg}`` (plus `input`); it runs in a new
        session unless `session` names one (created if new). INVALID_ARGUMENT if no
        orchestrator is deployed.
        """
        target = await (self.get_or_create_session(session) if session else self.create_session())
        task_input = {**({} if user_msg is None else {"user_msg": user_msg}), **(input or {})}
        return await target.run("", timeout=timeout, input=task_input)


class AsyncSession:
    """A session: workflow state carries from one run to the next within it."""

    def __init__(self, client: AsyncClient, session: resources_pb2.Session) -> None:
        self.client = client
        self.session = session

    @property
    def name(self) -> str:
        return self.session.name

    @property
    def id(self) -> str:
        return parse_session_name(self.session.name)

    def __repr__(self) -> str:
        return f"<AsyncSession {self.name}>"

    def _task(
        self,
        service: str,
        kwargs: dict[str, Any],
        timeout: float | None,
        parent_task: str,
        max_attempts: int | None,
    ) -> Task:
        task = Task(service=service, parent_task=parent_task)
        task.input.CopyFrom(to_struct(kwargs, "task input"))
        if timeout is not None:
            task.timeout.CopyFrom(proto_time.duration(timeout))
        if max_attempts is not None:
            task.retry_policy.max_attempts = max_attempts
        return task

    async def create_task(
        self,
        service: str,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
        parent_task: str = "",
        max_attempts: int | None = None,
        input: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> TaskHandle:
        """Queue a run of `service` and return at once with a handle on the task."""
        task = self._task(service, {**(input or {}), **kwargs}, timeout, parent_task, max_attempts)
        response = await self.client.call(
            self.client.stub.CreateTask,
            cp.CreateTaskRequest(parent=self.name, task=task, request_id=request_id or new_id()),
        )
        return TaskHandle(self.client, response.task.name, response.task)

    run_nowait = create_task

    async def run(
        self,
        service: str,
        *,
        timeout: float | None = None,
        input: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run `service` with keyword arguments and return the workflow's result.

        An empty `service` lets the deployed orchestrator route the task.

        One RunTask call; its request_id makes a retry after a lost connection
        continue the same task instead of starting another.
        """
        task = self._task(service, {**(input or {}), **kwargs}, timeout, "", None)
        request = cp.RunTaskRequest(parent=self.name, task=task, request_id=new_id())
        # The task's own timeout bounds it; the call itself waits as long as it takes.
        response = await self.client.call(
            self.client.stub.RunTask, request, idempotent=True, deadline=False
        )
        return task_result(response.task)

    async def list_tasks(self, **kwargs: Any) -> list[Task]:
        return await self.client.list_tasks(self.name, **kwargs)

    async def delete(self, *, force: bool = False) -> None:
        await self.client.delete_session(self.name, force=force)


class TaskHandle:
    """A task: its state, its result and its event stream."""

    def __init__(self, client: AsyncClient, name: str, task: Task | None = None) -> None:
        self.client = client
        self.name = name
        self.task = task

    def __repr__(self) -> str:
        return f"<TaskHandle {self.name}>"

    async def get(self) -> Task:
        self.task = await self.client.get_task(self.name)
        return self.task

    async def wait(self, timeout: float | None = None) -> Task:
        """Wait until the task finishes (or `timeout` passes) and return it."""
        while True:
            request = cp.WaitTaskRequest(name=self.name)
            if timeout is not None:
                request.timeout.CopyFrom(proto_time.duration(timeout))
            # The call's own deadline is a little longer than the wait it asks for.
            call_timeout = (timeout + 10.0) if timeout is not None else 24 * 3600.0
            response = await self.client.call(
                self.client.stub.WaitTask, request, timeout=call_timeout, idempotent=True
            )
            self.task = response.task
            if self.task.state in FINAL_STATES or timeout is not None:
                return self.task

    async def result(self) -> Any:
        """The workflow's result; TaskFailedError / TaskCancelledError otherwise."""
        return task_result(await self.wait())

    async def cancel(self, reason: str = "") -> bool:
        """Cancel the task; False if it had finished already."""
        response = await self.client.call(
            self.client.stub.CancelTask, cp.CancelTaskRequest(name=self.name, reason=reason)
        )
        self.task = response.task
        return not response.already_finished

    async def send_event(self, type: str, **payload: Any) -> Task:
        """Send an event into the task while it waits for input."""
        request = cp.SendTaskEventRequest(name=self.name, type=type)
        request.payload.CopyFrom(to_struct(payload, "event payload"))
        response = await self.client.call(self.client.stub.SendTaskEvent, request)
        self.task = response.task
        return self.task

    async def events(self, after_sequence: int = 0) -> AsyncGenerator[StreamedEvent, None]:
        """The task's events in order, ending with the final one.

        Resumes after `after_sequence`; if the stream breaks because the control plane
        went away, it reconnects and continues after the last event it yielded.
        """
        last = after_sequence
        failures = 0
        while True:
            call = self.client.stub.StreamTaskEvents(
                cp.StreamTaskEventsRequest(name=self.name, after_sequence=last),
                metadata=self.client._metadata,
            )
            try:
                async for response in call:
                    event = StreamedEvent.from_proto(response.event)
                    last = max(last, event.sequence)
                    failures = 0
                    yield event
                    if event.final:
                        return
                return
            except grpc.aio.AioRpcError as err:
                if _retryable(err, True, True) and (
                    failures * self.client._MAX_BACKOFF < self.client.reconnect_timeout
                ):
                    failures += 1
                    await self.client._reconnected(err, failures)
                    continue
                raise error_for_code(err.code(), err.details() or str(err.code())) from err
            finally:
                call.cancel()
