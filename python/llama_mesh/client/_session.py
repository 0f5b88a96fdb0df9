"""A session of the Python client: creating and running its tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llama_mesh.client._task_handle import TaskHandle
from llama_mesh.client._task_view import task_result
from llama_mesh.core import proto_time
from llama_mesh.core.json_values import to_struct
from llama_mesh.core.names import new_id, parse_session_name
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2

if TYPE_CHECKING:
    from llama_mesh.client._async import AsyncClient

Task = resources_pb2.Task


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
