"""Child tasks: a running task calls another service of the mesh and awaits its result.

Every call that a task makes to another service goes through ``call_service``: a nested
workflow, a tool of a tool service, a service offered to an agent as a tool, an
orchestrator's hop. The child runs in the parent's session with ``parent_task`` set and
the parent's remaining deadline; cancelling the parent cancels it (the control plane
does that); the parent's event stream announces it (``llama_mesh.ChildTaskCreated``).

A child is created only once every event its parent wrote before the call is stored on
the parent's stream (the agent's ToolCall, say): a replica that crashed in between would
otherwise leave a child whose cause is on no stream, and a reader of the stream could
see the child's result with no call before it (stream_marks.py).

A child's request id derives from the parent task, what was called and how many
identical calls came before it in this attempt. A parent that runs again (its replica
crashed or restarted, or it is retried) therefore finds the children its earlier attempt
created instead of creating them again: a question put to a person is asked once, a
tool call that finished is not repeated. A child that failed or was cancelled is not
reused: the new attempt calls again.

    result = await call_service("calc", {"tool": "add", "arguments": {"a": 1, "b": 2}})
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from llama_mesh.client import AsyncClient, AsyncSession, TaskHandle, task_result
from llama_mesh.core.failpoints import failpoint
from llama_mesh.core.lifecycle import CHILD_TASK_CREATED, SUCCEEDED, is_final
from llama_mesh.core.names import TaskName
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.stream_marks import events_handed_on

Task = resources_pb2.Task

# (task, event type, payload, event id) -> publish the event on the task's stream, once
# per event id
Publish = Callable[[str, str, dict[str, Any], str], Awaitable[None]]


@dataclass(frozen=True)
class ChildCaller:
    """How a replica creates child tasks: its client of the control plane, and how it
    publishes an event (e.g. announces a child) on a task's stream."""

    client: AsyncClient
    publish: Publish


@dataclass(frozen=True)
class RunningTask:
    """The task whose workflow is running in this asyncio context (one attempt)."""

    name: str
    deadline: float | None  # seconds since the epoch
    caller: ChildCaller | None = None
    # Returns once every event of the attempt handed on so far is stored (its outbox).
    stored: Callable[[], Awaitable[None]] | None = None
    # Calls made so far in this attempt, by call key: the n-th identical call of a
    # replayed attempt maps to the n-th child of the earlier one.
    calls: Counter[str] = field(default_factory=Counter)
    # Service records looked up in this attempt (the tools an agent is offered).
    services: dict[str, resources_pb2.Service] = field(default_factory=dict)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (at least a millisecond), or None."""
        return None if self.deadline is None else max(self.deadline - time.time(), 0.001)


current_task: contextvars.ContextVar[RunningTask | None] = contextvars.ContextVar(
    "llama_mesh_current_task", default=None
)


class NotInTaskError(RuntimeError):
    """A call to another service was made outside a task served by llama-mesh."""


def running_task(what: str) -> RunningTask:
    """The running task; NotInTaskError naming `what` when there is none."""
    parent = current_task.get()
    if parent is None or parent.caller is None:
        raise NotInTaskError(f"{what} runs only inside a task served by llama-mesh")
    return parent


def call_key(service: str, input: dict[str, Any]) -> str:
    """What identifies a call: the service and its input, canonically."""
    return json.dumps([service, input], sort_keys=True, separators=(",", ":"), default=str)


def _request_id(parent: str, key: str, occurrence: int, generation: int) -> str:
    digest = hashlib.sha256(f"{parent}\0{key}\0{occurrence}\0{generation}".encode())
    return f"child-{digest.hexdigest()[:40]}"


@dataclass(frozen=True)
class Child:
    """A child task just created (or found again), and how to announce it."""

    handle: TaskHandle
    service: str
    parent: RunningTask
    details: dict[str, Any]

    async def announce(self) -> None:
        """Publish ChildTaskCreated on the parent's stream, once per child (a replayed
        attempt that finds the child again publishes it under the same id)."""
        caller = self.parent.caller
        assert caller is not None
        await caller.publish(
            self.parent.name,
            CHILD_TASK_CREATED,
            {**self.details, "task": self.handle.name, "service": self.service},
            f"{TaskName.parse(self.handle.name).task_id}.child",
        )


async def _cause_stored(parent: RunningTask) -> None:
    """Return once every event the calling step wrote, and every event of the parent's
    run handed on before, is stored on the parent's stream."""
    failpoint("child_tasks.awaiting_cause")
    await events_handed_on()
    if parent.stored is not None:
        await parent.stored()


async def create_child(
    service: str,
    input: dict[str, Any],
    *,
    details: dict[str, Any] | None = None,
    parent: RunningTask | None = None,
) -> Child:
    """Create `service`'s child task of the running task, or find the one an earlier
    attempt created (not yet announced)."""
    parent = parent or running_task(f"a call to service {service!r}")
    caller = parent.caller
    assert caller is not None
    await _cause_stored(parent)
    key = call_key(service, input)
    occurrence = parent.calls[key]
    parent.calls[key] += 1
    name = TaskName.parse(parent.name)
    # The parent's session exists (it runs in it): no need to fetch it.
    session = AsyncSession(caller.client, resources_pb2.Session(name=name.session))
    generation = 0
    while True:
        handle = await session.create_task(
            service,
            timeout=parent.remaining(),
            parent_task=parent.name,
            input=input,
            request_id=_request_id(parent.name, key, occurrence, generation),
        )
        task = handle.task
        assert task is not None
        # An earlier attempt's child that did not succeed is not reused.
        if not is_final(task.state) or task.state == SUCCEEDED:
            return Child(handle, service, parent, details or {})
        generation += 1


async def publish_event(type: str, payload: dict[str, Any]) -> None:
    """Publish an event on the running task's stream now (not through the workflow's
    event stream, so it is out before whatever the caller does next), after the events
    the calling step wrote into the workflow's stream before."""
    task = running_task(f"publishing a {type} event")
    assert task.caller is not None
    await events_handed_on()
    await task.caller.publish(task.name, type, payload, "")


async def run_child(
    service: str,
    input: dict[str, Any],
    *,
    details: dict[str, Any] | None = None,
    parent: RunningTask | None = None,
) -> Task:
    """Run `service` with `input` as a child task of the running task; the finished
    child (its state, result or error)."""
    child = await create_child(service, input, details=details, parent=parent)
    # The announcement goes out while the child runs; both are done before this returns.
    announcing = asyncio.create_task(child.announce())
    try:
        task = await child.handle.wait()
    except BaseException:
        announcing.cancel()
        await asyncio.gather(announcing, return_exceptions=True)
        raise
    await announcing
    return task


async def call_service(
    service: str, input: dict[str, Any], *, details: dict[str, Any] | None = None
) -> Any:
    """Run `service` with `input` as a child task of the running task; its result.

    Raises TaskFailedError / TaskCancelledError / TaskDeadlineExceededError as the
    child ends, and NotInTaskError outside a task served by llama-mesh.
    """
    return task_result(await run_child(service, input, details=details))
