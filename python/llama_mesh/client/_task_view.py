"""What a client reads of a task: its result (or the typed error it ended with) and its events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from llama_mesh.core import agent_events, token_usage
from llama_mesh.core.errors import (
    MeshError,
    TaskCancelledError,
    TaskDeadlineExceededError,
    TaskFailedError,
    TaskResourceExhaustedError,
)
from llama_mesh.core.json_values import to_python
from llama_mesh.core.lifecycle import FINAL_STATES
from llama_mesh.core.status import error_type, status_code
from llama_mesh.v1 import resources_pb2

Task = resources_pb2.Task
TaskState = resources_pb2.TaskState

# StreamedEvent.state is the state's name without its TASK_STATE_ prefix.
_FINAL_STATE_NAMES = frozenset(
    TaskState.Name(state).removeprefix("TASK_STATE_") for state in FINAL_STATES
)


def task_result(task: Task) -> Any:
    """The result of a finished task, or the typed error it ended with."""
    if task.state == resources_pb2.TASK_STATE_SUCCEEDED:
        return to_python(task.result) if task.HasField("result") else None
    message = task.error.message or TaskState.Name(task.state)
    if task.state == resources_pb2.TASK_STATE_CANCELLED:
        raise TaskCancelledError(f"task {task.name} was cancelled: {message}", task)
    if task.state == resources_pb2.TASK_STATE_FAILED:
        kind = error_type(task.error)
        if status_code(task.error) == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise TaskDeadlineExceededError(f"task {task.name}: {message}", task, kind)
        if status_code(task.error) == grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise TaskResourceExhaustedError(f"task {task.name}: {message}", task, kind)
        raise TaskFailedError(f"task {task.name} failed: {message}", task, kind)
    raise MeshError(f"task {task.name} has not finished ({TaskState.Name(task.state)})")


@dataclass(frozen=True)
class StreamedEvent:
    """One event of a task, as a client sees it."""

    task: str
    sequence: int
    type: str
    payload: Any
    state: str
    attempt: int
    error_type: str = ""
    error_message: str = ""
    # Tokens of the LLM calls the event reports (token_usage.to_json), if any.
    usage: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.state in _FINAL_STATE_NAMES

    @property
    def agent_event(self) -> agent_events.AgentEvent | None:
        """The typed payload of an event of the agent vocabulary; None for others."""
        return agent_events.parse(self.type, self.payload)

    @classmethod
    def from_proto(cls, event: resources_pb2.TaskEvent) -> StreamedEvent:
        return cls(
            task=event.task,
            sequence=event.sequence,
            type=event.type,
            payload=to_python(event.payload) if event.HasField("payload") else None,
            state=TaskState.Name(event.state).removeprefix("TASK_STATE_"),
            attempt=event.attempt,
            error_type=error_type(event.error) if event.HasField("error") else "",
            error_message=event.error.message,
            usage=token_usage.to_json(event.usage) if event.HasField("usage") else None,
        )
