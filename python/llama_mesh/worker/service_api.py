"""The Service API servicer: what a replica tells and lets operators steer."""

from __future__ import annotations

from typing import Protocol

import grpc

from llama_mesh.core.paging import page_size, paginate
from llama_mesh.v1 import resources_pb2, service_pb2_grpc
from llama_mesh.v1 import service_pb2 as s

REPLY_TIME = 0.2
"""Seconds before a DrainService call's deadline when the drain stops waiting."""


class Steerable(Protocol):
    """What the Service API needs of a replica (the runtime implements it)."""

    @property
    def paused(self) -> bool: ...

    def describe(self) -> s.DescribeServiceResponse: ...

    def replica(self) -> resources_pb2.Replica: ...

    def running_tasks(self) -> list[resources_pb2.Task]: ...

    def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def drain(self, timeout: float | None = None) -> tuple[int, int]: ...


class ServiceAPIServicer(service_pb2_grpc.ServiceAPIServicer):
    """The ServiceAPI servicer of one replica."""

    def __init__(self, runtime: Steerable) -> None:
        self.runtime = runtime

    async def DescribeService(
        self,
        request: s.DescribeServiceRequest,
        context: grpc.aio.ServicerContext[s.DescribeServiceRequest, s.DescribeServiceResponse],
    ) -> s.DescribeServiceResponse:
        return self.runtime.describe()

    async def PauseService(
        self,
        request: s.PauseServiceRequest,
        context: grpc.aio.ServicerContext[s.PauseServiceRequest, s.PauseServiceResponse],
    ) -> s.PauseServiceResponse:
        self.runtime.pause()
        return s.PauseServiceResponse(replica=self.runtime.replica())

    async def ResumeService(
        self,
        request: s.ResumeServiceRequest,
        context: grpc.aio.ServicerContext[s.ResumeServiceRequest, s.ResumeServiceResponse],
    ) -> s.ResumeServiceResponse:
        await self.runtime.resume()
        return s.ResumeServiceResponse(replica=self.runtime.replica())

    async def DrainService(
        self,
        request: s.DrainServiceRequest,
        context: grpc.aio.ServicerContext[s.DrainServiceRequest, s.DrainServiceResponse],
    ) -> s.DrainServiceResponse:
        remaining = context.time_remaining()
        # Hand the tasks back a moment before the caller's deadline, so that the answer
        # reaches it; the drain goes on to its end even if the call does not wait.
        timeout = None if remaining is None else max(remaining - REPLY_TIME, 0.0)
        finished, requeued = await self.runtime.drain(timeout)
        return s.DrainServiceResponse(finished_task_count=finished, requeued_task_count=requeued)

    async def ListRunningTasks(
        self,
        request: s.ListRunningTasksRequest,
        context: grpc.aio.ServicerContext[s.ListRunningTasksRequest, s.ListRunningTasksResponse],
    ) -> s.ListRunningTasksResponse:
        size = page_size(request.page_size)
        tasks = [(t.name, t) for t in self.runtime.running_tasks()]
        page = paginate(tasks, size, request.page_token, listing="runningTasks")
        return s.ListRunningTasksResponse(tasks=page.items, next_page_token=page.next_page_token)
