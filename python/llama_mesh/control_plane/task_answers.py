"""Answering a task that waits for input, once, even when the call is retried.

The answer is stored first, on the task's input subject, under a message id made of the
question's stream sequence: JetStream's duplicate window makes that store the one
decision of who answered. The record then goes WAITING -> RUNNING. So a call whose
reply was lost (NATS restarting, a control plane failing over) is retried by the
client and finds its own answer stored, and the record catches up; a second, different
answer to the same question is refused. Changing the record first would leave a task
RUNNING with its answer never stored when the store failed after the change.
"""

from __future__ import annotations

import logging

from google.protobuf import struct_pb2
from nats.js.errors import NotFoundError as JsNotFoundError

from llama_mesh.core.errors import FailedPreconditionError, UnavailableError
from llama_mesh.core.failpoints import failpoint
from llama_mesh.core.lifecycle import WAITING, accept_input, check_waiting
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.buckets import Unchanged
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.errors import store_errors
from llama_mesh.jetstream.journal import task_key, unlist_waiting
from llama_mesh.telemetry.logs import about_task
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)

# How long an answer waits for its question to be numbered (one KV write after the
# question's publish) before the caller is asked to send it again.
QUESTION_NUMBERING_TIMEOUT = 5.0


async def answer_task(
    state: MeshState,
    name: TaskName,
    found: tuple[resources_pb2.Task, int],
    type: str,
    payload: struct_pb2.Struct,
) -> resources_pb2.Task:
    """Store the answer `type`/`payload` to the question `found` (the record and its
    revision) waits on, and record that the task runs again; the task after it."""
    answer = resources_pb2.TaskInput(task=str(name), type=type, payload=payload)
    if found[0].state != WAITING and await _last_answer(state, name) == answer:
        # A retried call whose first try went through; the task may have finished since.
        return found[0]
    check_waiting(found[0])
    if not found[0].input_request.sequence:
        # The question is published, then numbered in the record (journal.record): a
        # caller that answers as soon as it sees the question may come in between.
        found = await _numbered(state, name)
        check_waiting(found[0])
    question = found[0].input_request.sequence
    envelope = resources_pb2.Envelope(id=f"{name.task_id}.answer.{question}", task_input=answer)
    with store_errors(f"sending an event into task {name}"):
        ack = await state.js.publish(
            state.topology.input_subject(name.task_id),
            envelope.SerializeToString(),
            headers={"Nats-Msg-Id": envelope.id},
        )
    if ack.duplicate:
        await _check_same_answer(state, name, ack.seq, answer)

    changed = False

    def change(task: resources_pb2.Task) -> None:
        nonlocal changed
        changed = False
        if task.state != WAITING or task.input_request.sequence != question:
            raise Unchanged  # recorded already, by the call this one repeats
        accept_input(task)
        changed = True

    task, _ = await state.tasks.mutate_from(task_key(name), str(name), change, found)
    if changed:
        await unlist_waiting(state.waiting, name)  # out of the inbox: answered
    logger.info("task %s: event %s sent", name, type, extra=about_task(name, task.service))
    return task


async def _numbered(state: MeshState, name: TaskName) -> tuple[resources_pb2.Task, int]:
    """The record once its question is numbered (or it stops waiting)."""
    failpoint("task_answers.awaiting_number")
    numbered = await state.tasks.wait_for(
        task_key(name),
        lambda task: task.state != WAITING or bool(task.input_request.sequence),
        QUESTION_NUMBERING_TIMEOUT,
    )
    if numbered is None:
        # Its replica stopped between the two writes: a new attempt asks again.
        raise UnavailableError(f"task {name}'s question is being recorded: send the answer again")
    return numbered


async def _last_answer(state: MeshState, name: TaskName) -> resources_pb2.TaskInput | None:
    try:
        stored = await state.js.get_last_msg(
            state.topology.event_stream, state.topology.input_subject(name.task_id)
        )
    except JsNotFoundError:
        return None
    return resources_pb2.Envelope.FromString(stored.data or b"").task_input


async def _check_same_answer(
    state: MeshState, name: TaskName, seq: int, answer: resources_pb2.TaskInput
) -> None:
    """The question had an answer stored already: fine if it is this one (a retried
    call), FAILED_PRECONDITION if someone else's."""
    stored = await state.js.get_msg(state.topology.event_stream, seq=seq)
    first = resources_pb2.Envelope.FromString(stored.data or b"").task_input
    if (first.type, first.payload) != (answer.type, answer.payload):
        raise FailedPreconditionError(
            f"task {name} has an answer to its question already (a {first.type} event): "
            "it takes one answer per question"
        )
