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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from llama_mesh.client._api_keys import ApiKeys
from llama_mesh.client._credentials import Credentials
from llama_mesh.client._session import AsyncSession
from llama_mesh.client._task_handle import TaskHandle
from llama_mesh.core.errors import (
    UnavailableError,
    error_for_code,
)
from llama_mesh.core.names import service_name, session_name
from llama_mesh.v1 import auth_pb2_grpc, control_plane_pb2_grpc, resources_pb2
from llama_mesh.v1 import control_plane_pb2 as cp

logger = logging.getLogger(__name__)

T = TypeVar("T")
Task = resources_pb2.Task
TaskState = resources_pb2.TaskState

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 << 20),
    ("grpc.max_send_message_length", 16 << 20),
    # No sooner than the mesh's servers accept pings (rpc/server.py MIN_PING_INTERVAL_MS).
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
        connect_timeout: float | None = None,
        metadata: list[tuple[str, str]] | None = None,
        token: str | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        """`credentials` (a token, TLS files) default to the environment's
        (LLAMA_MESH_TOKEN, LLAMA_MESH_CA_FILE, …: see Credentials); `token` overrides
        the token alone. A failed call waits up to `reconnect_timeout` seconds for the
        control plane to be back; until one call has reached it, `connect_timeout`
        (default: the same), so that a client can fail at once when nothing listens
        and still ride out a restart later."""
        self.address = address
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        self.connect_timeout = reconnect_timeout if connect_timeout is None else connect_timeout
        self._reached = False
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
            async with asyncio.timeout(self._patience):
                await self._channel.channel_ready()
                await asyncio.sleep(min(0.05 * 2 ** (attempt - 1), self._MAX_BACKOFF))
        except TimeoutError:
            raise UnavailableError(
                f"the control plane at {self.address} is unreachable: {err.details()}"
            ) from err

    def reached(self) -> None:
        """Note that the control plane answered (a stream's message): from now on a
        failed call waits `reconnect_timeout` for it."""
        self._reached = True

    @property
    def _patience(self) -> float:
        """How long a failed call waits for the control plane to be back."""
        return self.reconnect_timeout if self._reached else self.connect_timeout

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
                response = await method(
                    request,
                    timeout=(timeout or self.timeout) if deadline else None,
                    metadata=self._metadata,
                )
                self.reached()
                return response
            except grpc.aio.AioRpcError as err:
                attempt += 1
                await self.reconnect_or_raise(
                    err, attempt, unavailable=retry_unavailable, cancelled=idempotent
                )

    async def reconnect_or_raise(
        self,
        err: grpc.aio.AioRpcError,
        attempt: int,
        *,
        unavailable: bool = True,
        cancelled: bool = True,
    ) -> None:
        """After the `attempt`-th failure of a call: wait until repeating it is worth
        it (an UNAVAILABLE, or with `cancelled` a CANCELLED this client did not cause,
        within reconnect_timeout), or raise the MeshError of `err`."""
        if _retryable(err, unavailable, cancelled) and (
            (attempt - 1) * self._MAX_BACKOFF < self._patience
        ):
            await self._reconnected(err, attempt)
            return
        message = err.details() or str(err.code())
        if err.code() == grpc.StatusCode.UNAUTHENTICATED and not any(
            key == "authorization" for key, _ in self._metadata
        ):
            # The server's advice is a header; this client's user gives a token.
            message += " (this client sent none: set LLAMA_MESH_TOKEN, or pass token=...)"
        raise error_for_code(err.code(), message) from err

    def open_stream(self, method: Callable[..., T], request: Any) -> T:
        """Open a server-streaming RPC with this client's credentials; the caller
        iterates it, cancels it, and calls reconnect_or_raise when it breaks."""
        return method(request, metadata=self._metadata)

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

    async def list_sessions(self, *, limit: int | None = None) -> list[resources_pb2.Session]:
        """Sessions in the order they last changed, oldest first: all of them, or the
        first `limit` (asking only for the pages that hold them)."""
        size = min(limit, 1000) if limit else 1000
        return await self._all(
            lambda token: self.call(
                self.stub.ListSessions, cp.ListSessionsRequest(page_size=size, page_token=token)
            ),
            "sessions",
            limit,
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
