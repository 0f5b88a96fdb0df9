"""The ControlPlane API: services, sessions and tasks, with all state in JetStream.

No state of record is kept here, so any number of control-plane replicas serve the
same mesh (each keeps only caches it can rebuild: the service registry from a KV
watch, and the calls waiting on it). This servicer composes the parts, one per
resource; each RPC is one line that hands the request to its part:

    registry           services: register, lease, deregister, get, list (+ the cache)
    sessions           sessions: create, get, list, delete
    tasks              tasks: create (task_creation), run, wait, get, list,
                       cancel (task_cancellation), stream events, send an event
    waiters            the calls waiting for a task's last event

A task's journey: CreateTask validates and writes the record (PENDING), then
publishes the assignment on the service's task subject with Nats-Msg-Id = task id;
WaitTask registers a waiter that the task's last event (on `events.{task}.end`) wakes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from llama_mesh.config.retention import RetentionConfig
from llama_mesh.control_plane.namespaces import require_visible
from llama_mesh.control_plane.registry import ServiceRegistry
from llama_mesh.control_plane.sessions import Sessions
from llama_mesh.control_plane.tasks import Tasks
from llama_mesh.control_plane.waiters import FinalEventWaiters
from llama_mesh.jetstream import session_index
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.live_events import LiveEvents
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import control_plane_pb2_grpc


class ControlPlaneAPIServicer(control_plane_pb2_grpc.ControlPlaneAPIServicer):
    """The ControlPlaneAPI servicer."""

    def __init__(
        self,
        state: MeshState,
        live_events: LiveEvents,
        retention: RetentionConfig | None = None,
    ) -> None:
        self.state = state
        self.retention = retention or RetentionConfig()
        # Set as the server shuts down: waits and streams end with UNAVAILABLE.
        self.shutting_down = asyncio.Event()
        self.registry = ServiceRegistry(state)
        self.waiters = FinalEventWaiters(state)
        self.sessions = Sessions(state, self.retention)
        self.tasks = Tasks(
            state, self.registry, self.waiters, self.shutting_down, self.sessions, live_events
        )

    async def start(self) -> None:
        """Index the sessions of an earlier version (once), listen for the last event of
        every task and watch the service registry."""
        await session_index.backfill(self.state.nc, self.state.js, self.state.topology)
        await self.waiters.start()
        await self.registry.start()

    async def stop(self) -> None:
        await self.registry.stop()
        await self.waiters.stop()

    # ----------------------------------------------------------------- services

    async def RegisterService(
        self,
        request: cp.RegisterServiceRequest,
        context: grpc.aio.ServicerContext[cp.RegisterServiceRequest, cp.RegisterServiceResponse],
    ) -> cp.RegisterServiceResponse:
        return await self.registry.register_service(request)

    async def RenewServiceLease(
        self,
        request: cp.RenewServiceLeaseRequest,
        context: grpc.aio.ServicerContext[
            cp.RenewServiceLeaseRequest, cp.RenewServiceLeaseResponse
        ],
    ) -> cp.RenewServiceLeaseResponse:
        return await self.registry.renew_service_lease(request)

    async def DeregisterService(
        self,
        request: cp.DeregisterServiceRequest,
        context: grpc.aio.ServicerContext[
            cp.DeregisterServiceRequest, cp.DeregisterServiceResponse
        ],
    ) -> cp.DeregisterServiceResponse:
        return await self.registry.deregister_service(request)

    async def GetService(
        self,
        request: cp.GetServiceRequest,
        context: grpc.aio.ServicerContext[cp.GetServiceRequest, cp.GetServiceResponse],
    ) -> cp.GetServiceResponse:
        return await self.registry.get_service(request)

    async def ListServices(
        self,
        request: cp.ListServicesRequest,
        context: grpc.aio.ServicerContext[cp.ListServicesRequest, cp.ListServicesResponse],
    ) -> cp.ListServicesResponse:
        return await self.registry.list_services(request)

    async def GetQueueConfig(
        self,
        request: cp.GetQueueConfigRequest,
        context: grpc.aio.ServicerContext[cp.GetQueueConfigRequest, cp.GetQueueConfigResponse],
    ) -> cp.GetQueueConfigResponse:
        return cp.GetQueueConfigResponse(
            queue_config=self.state.topology.queue_config(self.state.nats_urls)
        )

    # ----------------------------------------------------------------- sessions

    async def CreateSession(
        self,
        request: cp.CreateSessionRequest,
        context: grpc.aio.ServicerContext[cp.CreateSessionRequest, cp.CreateSessionResponse],
    ) -> cp.CreateSessionResponse:
        return await self.sessions.create_session(request)

    async def GetSession(
        self,
        request: cp.GetSessionRequest,
        context: grpc.aio.ServicerContext[cp.GetSessionRequest, cp.GetSessionResponse],
    ) -> cp.GetSessionResponse:
        return await self.sessions.get_session(request)

    async def ListSessions(
        self,
        request: cp.ListSessionsRequest,
        context: grpc.aio.ServicerContext[cp.ListSessionsRequest, cp.ListSessionsResponse],
    ) -> cp.ListSessionsResponse:
        return await self.sessions.list_sessions(request)

    async def DeleteSession(
        self,
        request: cp.DeleteSessionRequest,
        context: grpc.aio.ServicerContext[cp.DeleteSessionRequest, cp.DeleteSessionResponse],
    ) -> cp.DeleteSessionResponse:
        return await self.sessions.delete_session(request)

    # ----------------------------------------------------------------- tasks

    async def CreateTask(
        self,
        request: cp.CreateTaskRequest,
        context: grpc.aio.ServicerContext[cp.CreateTaskRequest, cp.CreateTaskResponse],
    ) -> cp.CreateTaskResponse:
        await require_visible(self.state, request.parent, "parent")
        return await self.tasks.create_task(request)

    async def RunTask(
        self,
        request: cp.RunTaskRequest,
        context: grpc.aio.ServicerContext[cp.RunTaskRequest, cp.RunTaskResponse],
    ) -> cp.RunTaskResponse:
        await require_visible(self.state, request.parent, "parent")
        return await self.tasks.run_task(request, context.time_remaining())

    async def WaitTask(
        self,
        request: cp.WaitTaskRequest,
        context: grpc.aio.ServicerContext[cp.WaitTaskRequest, cp.WaitTaskResponse],
    ) -> cp.WaitTaskResponse:
        await require_visible(self.state, request.name)
        return await self.tasks.wait_task(request)

    async def GetTask(
        self,
        request: cp.GetTaskRequest,
        context: grpc.aio.ServicerContext[cp.GetTaskRequest, cp.GetTaskResponse],
    ) -> cp.GetTaskResponse:
        await require_visible(self.state, request.name)
        return await self.tasks.get_task(request)

    async def ListTasks(
        self,
        request: cp.ListTasksRequest,
        context: grpc.aio.ServicerContext[cp.ListTasksRequest, cp.ListTasksResponse],
    ) -> cp.ListTasksResponse:
        return await self.tasks.list_tasks(request)

    async def CancelTask(
        self,
        request: cp.CancelTaskRequest,
        context: grpc.aio.ServicerContext[cp.CancelTaskRequest, cp.CancelTaskResponse],
    ) -> cp.CancelTaskResponse:
        await require_visible(self.state, request.name)
        return await self.tasks.cancel_task(request)

    def StreamTaskEvents(
        self,
        request: cp.StreamTaskEventsRequest,
        context: grpc.aio.ServicerContext[cp.StreamTaskEventsRequest, cp.StreamTaskEventsResponse],
    ) -> AsyncIterator[cp.StreamTaskEventsResponse]:
        # Not async: the stream is the tasks part's async generator, returned as is.
        return self.tasks.stream_task_events(request)

    async def SendTaskEvent(
        self,
        request: cp.SendTaskEventRequest,
        context: grpc.aio.ServicerContext[cp.SendTaskEventRequest, cp.SendTaskEventResponse],
    ) -> cp.SendTaskEventResponse:
        await require_visible(self.state, request.name)
        return await self.tasks.send_task_event(request)
