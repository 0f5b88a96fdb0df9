"""The blocking client: the same methods as AsyncClient, on a loop of its own.

with Client("127.0.0.1:50051") as client:
    session = client.create_session()
    print(session.run("echo", arg1="hello"))
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

from llama_mesh.client._api_keys import ApiKeys
from llama_mesh.client._async import AsyncClient
from llama_mesh.client._session import AsyncSession
from llama_mesh.client._task_handle import TaskHandle
from llama_mesh.client._task_view import StreamedEvent
from llama_mesh.v1 import auth_pb2, resources_pb2

T = TypeVar("T")
Task = resources_pb2.Task


class _LoopThread:
    """An event loop on its own thread, so the sync client works anywhere (also
    inside a notebook whose loop is running)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncApiKeys:
    """`client.api_keys` of the blocking client: AsyncClient's ApiKeys, blocking.

    token, key = client.api_keys.create(["client"], key_id="ci")
    """

    def __init__(self, loop: _LoopThread, keys: ApiKeys) -> None:
        self._loop = loop
        self._keys = keys

    def create(self, roles: list[str], **kwargs: Any) -> tuple[str, auth_pb2.ApiKey]:
        return self._loop.run(self._keys.create(roles, **kwargs))

    def get(self, key_id: str) -> auth_pb2.ApiKey:
        return self._loop.run(self._keys.get(key_id))

    def list(self) -> list[auth_pb2.ApiKey]:
        return self._loop.run(self._keys.list())

    def rotate(self, key_id: str, *, grace: float = 0.0) -> tuple[str, auth_pb2.ApiKey]:
        return self._loop.run(self._keys.rotate(key_id, grace=grace))

    def delete(self, key_id: str) -> None:
        self._loop.run(self._keys.delete(key_id))

    def whoami(self) -> auth_pb2.CallerIdentity:
        return self._loop.run(self._keys.whoami())


class Client:
    """Blocking client with the same methods as AsyncClient.

    client = Client("127.0.0.1:50051")
    session = client.create_session()
    print(session.run("echo", arg1="hello"))
    """

    def __init__(self, address: str = "127.0.0.1:50051", **kwargs: Any) -> None:
        self._loop = _LoopThread()
        self._async = self._loop.run(self._make(address, kwargs))
        self.api_keys = SyncApiKeys(self._loop, self._async.api_keys)

    @staticmethod
    async def _make(address: str, kwargs: dict[str, Any]) -> AsyncClient:
        return AsyncClient(address, **kwargs)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._loop.run(self._async.close())
        self._loop.stop()

    def create_session(self, session_id: str | None = None, **kwargs: Any) -> Session:
        return Session(self, self._loop.run(self._async.create_session(session_id, **kwargs)))

    def get_or_create_session(self, session_id: str, **kwargs: Any) -> Session:
        return Session(
            self, self._loop.run(self._async.get_or_create_session(session_id, **kwargs))
        )

    def get_session(self, session: str) -> Session:
        return Session(self, self._loop.run(self._async.get_session(session)))

    def list_sessions(self, *, limit: int | None = None) -> list[resources_pb2.Session]:
        return self._loop.run(self._async.list_sessions(limit=limit))

    def delete_session(self, session: str, *, force: bool = False) -> None:
        self._loop.run(self._async.delete_session(session, force=force))

    def list_services(self) -> list[resources_pb2.Service]:
        return self._loop.run(self._async.list_services())

    def get_service(self, service: str) -> resources_pb2.Service:
        return self._loop.run(self._async.get_service(service))

    def task(self, name: str) -> SyncTaskHandle:
        """A handle on an existing task, by name (`sessions/{session}/tasks/{task}`)."""
        return SyncTaskHandle(self, self._async.task(name))

    def get_task(self, name: str) -> Task:
        return self._loop.run(self._async.get_task(name))

    def list_tasks(self, session: str = "-", **kwargs: Any) -> list[Task]:
        return self._loop.run(self._async.list_tasks(session, **kwargs))

    def inbox(self) -> list[Task]:
        return self._loop.run(self._async.inbox())

    def answer(self, task: str, response: str) -> Task:
        return self._loop.run(self._async.answer(task, response))

    def run(self, user_msg: str | None = None, **kwargs: Any) -> Any:
        """Run a task that names no service: the deployed orchestrator routes it."""
        return self._loop.run(self._async.run(user_msg, **kwargs))


class Session:
    """Blocking counterpart of AsyncSession."""

    def __init__(self, client: Client, session: AsyncSession) -> None:
        self._client = client
        self._async = session

    @property
    def name(self) -> str:
        return self._async.name

    @property
    def id(self) -> str:
        return self._async.id

    def run(self, service: str, **kwargs: Any) -> Any:
        return self._client._loop.run(self._async.run(service, **kwargs))

    def create_task(self, service: str, **kwargs: Any) -> SyncTaskHandle:
        handle = self._client._loop.run(self._async.create_task(service, **kwargs))
        return SyncTaskHandle(self._client, handle)

    run_nowait = create_task

    def list_tasks(self, **kwargs: Any) -> list[Task]:
        return self._client._loop.run(self._async.list_tasks(**kwargs))

    def delete(self, *, force: bool = False) -> None:
        self._client._loop.run(self._async.delete(force=force))


class SyncTaskHandle:
    """Blocking counterpart of TaskHandle."""

    def __init__(self, client: Client, handle: TaskHandle) -> None:
        self._client = client
        self._async = handle

    @property
    def name(self) -> str:
        return self._async.name

    def get(self) -> Task:
        return self._client._loop.run(self._async.get())

    def wait(self, timeout: float | None = None) -> Task:
        return self._client._loop.run(self._async.wait(timeout))

    def result(self) -> Any:
        return self._client._loop.run(self._async.result())

    def cancel(self, reason: str = "") -> bool:
        return self._client._loop.run(self._async.cancel(reason))

    def send_event(self, type: str, **payload: Any) -> Task:
        return self._client._loop.run(self._async.send_event(type, **payload))

    def events(self, after_sequence: int = 0) -> Iterator[StreamedEvent]:
        """The task's events as they come, ending with the final one; each `next()`
        blocks until the next event. Leaving the loop early closes the stream.

        for event in task.events():
            if event.state == "WAITING_FOR_INPUT":
                break
        """
        stream = self._async.events(after_sequence)
        try:
            while True:
                try:
                    yield self._client._loop.run(anext(stream))
                except StopAsyncIteration:
                    return
        finally:
            self._client._loop.run(stream.aclose())
