"""The Service API servicer: what a replica tells and lets operators steer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf import json_format, struct_pb2

from llama_mesh.grpc_server import ServicerContext
from llama_mesh.names import service_name
from llama_mesh.store import page_size, paginate
from llama_mesh.v1 import service_pb2 as s
from llama_mesh.v1 import service_pb2_grpc

if TYPE_CHECKING:
    from llama_mesh.runtime import ServiceRuntime


class ServiceAPI(service_pb2_grpc.ServiceAPIServicer):
    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime

    async def DescribeService(
        self, request: s.DescribeServiceRequest, context: ServicerContext
    ) -> s.DescribeServiceResponse:
        rt = self.runtime
        return s.DescribeServiceResponse(
            name=service_name(rt.config.name),
            kind=rt.config.kind,
            description=rt.config.description or rt.runner.description,
            input_schema=json_format.ParseDict(rt.runner.input_schema(), struct_pb2.Struct()),
            replica=rt.replica(),
            running_task_count=len(rt.running_tasks()),
            paused=rt.paused,
            accepted_event_types=rt.runner.accepted_event_types,
        )

    async def PauseService(
        self, request: s.PauseServiceRequest, context: ServicerContext
    ) -> s.PauseServiceResponse:
        self.runtime.pause()
        return s.PauseServiceResponse(replica=self.runtime.replica())

    async def ResumeService(
        self, request: s.ResumeServiceRequest, context: ServicerContext
    ) -> s.ResumeServiceResponse:
        await self.runtime.resume()
        return s.ResumeServiceResponse(replica=self.runtime.replica())

    async def DrainService(
        self, request: s.DrainServiceRequest, context: ServicerContext
    ) -> s.DrainServiceResponse:
        finished, requeued = await self.runtime.drain(context.time_remaining())
        return s.DrainServiceResponse(finished_task_count=finished, requeued_task_count=requeued)

    async def ListRunningTasks(
        self, request: s.ListRunningTasksRequest, context: ServicerContext
    ) -> s.ListRunningTasksResponse:
        size = page_size(request.page_size)
        tasks = [(t.name, t) for t in self.runtime.running_tasks()]
        page = paginate(tasks, size, request.page_token)
        return s.ListRunningTasksResponse(tasks=page.items, next_page_token=page.next_page_token)
