"""A handle on one task of the Python client: its state, result and event stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import grpc

from llama_mesh.client._task_view import StreamedEvent, task_result
from llama_mesh.core import proto_time
from llama_mesh.core.json_values import to_struct
from llama_mesh.core.lifecycle import FINAL_STATES
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2

if TYPE_CHECKING:
    from llama_mesh.client._async import AsyncClient

Task = resources_pb2.Task


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
            call = self.client.open_stream(
                self.client.stub.StreamTaskEvents,
                cp.StreamTaskEventsRequest(name=self.name, after_sequence=last),
            )
            try:
                async for response in call:
                    event = StreamedEvent.from_proto(response.event)
                    last = max(last, event.sequence)
                    failures = 0
                    self.client.reached()
                    yield event
                    if event.final:
                        return
                return
            except grpc.aio.AioRpcError as err:
                failures += 1
                await self.client.reconnect_or_raise(err, failures)
            finally:
                call.cancel()
