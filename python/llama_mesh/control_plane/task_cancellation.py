"""Cancelling a task, and with it its active child tasks.

A PENDING task (no replica has it yet) is cancelled here, by recording its final
event. A task a replica runs is marked `cancel_requested` and its replica is told on
the task's cancel subject; the replica ends it. Either way the signal is sent, since
a replica may take a PENDING task while it is being cancelled.
"""

from __future__ import annotations

import logging

from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.core.lifecycle import (
    ACTIVE_STATES,
    CancelStep,
    cancelled_event,
    request_cancel,
)
from llama_mesh.core.names import TaskName, new_id
from llama_mesh.jetstream.buckets import Unchanged
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import final_event_id, task_key
from llama_mesh.telemetry.logs import about_task
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)


async def cancel_task(
    state: MeshState, name: TaskName, reason: str
) -> tuple[resources_pb2.Task, bool]:
    """Cancel a task; (task, already_finished)."""
    reason = reason or "cancelled by client"
    steps: list[CancelStep] = []

    def change(task: resources_pb2.Task) -> None:
        steps.append(request_cancel(task))
        if steps[-1] is not CancelStep.REQUESTED:
            raise Unchanged

    task = await state.tasks.mutate(task_key(name), str(name), change)
    if steps[-1] is CancelStep.FINISHED:
        return task, True
    if steps[-1] is CancelStep.NOW:
        event = cancelled_event(task.attempt_count, reason)
        try:
            task = await state.journal.record(name, event, event_id=final_event_id(name))
        except FailedPreconditionError:
            return await state.tasks.get(task_key(name), str(name)), True
        # It was PENDING; a replica may have taken it meanwhile: tell it too.
    signal = resources_pb2.Envelope(
        id=new_id(),
        task_cancellation=resources_pb2.TaskCancellation(task=str(name), reason=reason),
    )
    await state.nc.publish(state.topology.cancel_subject(name.task_id), signal.SerializeToString())
    for _, child in await state.tasks.scan(f"{name.session_id}.*"):
        if child.parent_task == str(name) and child.state in ACTIVE_STATES:
            await cancel_task(state, TaskName.parse(child.name), "parent task cancelled")
    logger.info(
        "task %s: cancel requested (%s)", name, reason, extra=about_task(name, task.service)
    )
    return task, False
