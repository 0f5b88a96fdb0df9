"""Creating a task: check the request, write the record (PENDING), publish the
assignment on the service's task subject with Nats-Msg-Id = task id.

A repeated request (same `request_id` in the same session) derives the same task id,
so it finds the record its first call wrote. If that call ended between the record
and the publish (its control plane crashed), the task is still PENDING and was never
queued: a repeat within JetStream's de-duplication window publishes it (a copy of a
publish that did happen is dropped; a task a replica took is no longer PENDING at
attempt 0).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from google.protobuf import struct_pb2

from llama_mesh.config.retention import DAY, MAX_TTL
from llama_mesh.control_plane.registry import ServiceRegistry
from llama_mesh.control_plane.sessions import Sessions
from llama_mesh.core import proto_time
from llama_mesh.core.attempt_policy import check_retry_policy
from llama_mesh.core.errors import FailedPreconditionError, InvalidArgumentError
from llama_mesh.core.failpoints import failpoint
from llama_mesh.core.json_values import to_python
from llama_mesh.core.lifecycle import ACTIVE_STATES, PENDING
from llama_mesh.core.limits import (
    MAX_INPUT_BYTES,
    MAX_REQUEST_ID_CHARS,
    check_bytes,
    check_labels,
)
from llama_mesh.core.names import TaskName, check_service_id, new_id, parse_session_name
from llama_mesh.core.object_schema import check_object
from llama_mesh.jetstream import task_index
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.errors import store_errors
from llama_mesh.jetstream.journal import task_key
from llama_mesh.jetstream.topology import DUPLICATE_WINDOW
from llama_mesh.telemetry import metrics, tracing
from llama_mesh.telemetry.logs import about_task
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)


def new_task_id() -> str:
    """Ids sort by creation time, so listing newest-first needs no extra index."""
    return f"{time.time_ns():016x}{new_id()[:8]}"


def new_task_id_for(request_id: str, session_id: str) -> str:
    return hashlib.sha256(f"{session_id}\0{request_id}".encode()).hexdigest()[:40]


def check_input(task: resources_pb2.Task, service: resources_pb2.Service) -> None:
    """The task's input fits the size limit and the service's input schema."""
    check_bytes(
        "task.input", task.input.ByteSize(), MAX_INPUT_BYTES, "pass large data by reference"
    )
    check_object(
        dict.fromkeys(task.input.fields),
        _top_level(service.input_schema),
        "task.input",
        f"service {task.service!r}",
        # Start events may convert what they get (pydantic's lax mode): only fields here.
        types=False,
    )


def _top_level(schema: struct_pb2.Struct) -> dict[str, Any]:
    """What check_object reads of a schema when it checks fields only: the required
    ones (or alternatives of them), the names of the declared ones, whether others are
    allowed. (Converting the whole input and schema to check their keys cost ~0.2 ms
    per agent turn.)"""
    fields = schema.fields
    out: dict[str, Any] = {}
    for key in ("required", "anyOf", "additionalProperties"):
        if key in fields:
            out[key] = to_python(fields[key])
    if "properties" in fields:
        out["properties"] = dict.fromkeys(fields["properties"].struct_value.fields)
    return out


async def create_task(
    state: MeshState,
    registry: ServiceRegistry,
    sessions: Sessions,
    parent: str,
    requested: resources_pb2.Task,
    request_id: str,
    *,
    call_deadline: float | None = None,
    task_id: str = "",
    session_found: tuple[resources_pb2.Session, int] | None = None,
) -> resources_pb2.Task:
    """Create a task; `task_id` if the caller chose it already (as RunTask does, to
    wait on it before it exists), else derived from `request_id` or new.
    `call_deadline` (epoch seconds) also bounds the task. `session_found`: the
    session's record and revision if the caller has just read them (the Agents API
    has, to check the session is its agent's), so they are not read again.

    Traced as `task.create`: the assignment carries its context in the NATS headers,
    so every attempt of the task is a child of this span."""
    with tracing.span("task.create", kind="PRODUCER", **{"llama_mesh.session": parent}):
        session_id = parse_session_name(parent, "parent")
        if not requested.service:
            requested.service = await registry.orchestrator()
        service_id = check_service_id(requested.service, "task.service")
        if len(request_id) > MAX_REQUEST_ID_CHARS or not request_id.isprintable():
            raise InvalidArgumentError(
                f"request_id must be at most {MAX_REQUEST_ID_CHARS} printable characters"
            )
        check_labels("task.labels", requested.labels)
        if requested.parent_task:
            TaskName.parse(requested.parent_task, "task.parent_task")
        timeout = proto_time.seconds(requested.timeout)
        if timeout < 0:
            raise InvalidArgumentError("task.timeout must not be negative")
        if timeout > MAX_TTL:
            # Longer than any session keeps its tasks (and a deadline past year 9999
            # was a ValueError: INTERNAL).
            raise InvalidArgumentError(
                f"task.timeout must be at most {MAX_TTL / DAY:g} days (got {timeout:g} s)"
            )
        check_retry_policy(requested.retry_policy, "task.retry_policy")
        session, service = await asyncio.gather(
            sessions.in_use(session_id, parent, session_found), registry.lookup(service_id)
        )
        check_input(requested, service)

        if not task_id:
            # With a request id, the id follows from it: a repeated request finds the
            # task its first call created when it writes the record below.
            task_id = new_task_id_for(request_id, session_id) if request_id else new_task_id()
        name = TaskName(session_id, task_id)
        tracing.annotate(**{"llama_mesh.task": str(name), "llama_mesh.service": service_id})

        if session.overlap_policy == resources_pb2.OVERLAP_POLICY_REJECT:
            busy = [
                t
                for _, t in await state.tasks.scan(f"{session_id}.*")
                if t.service == service_id and t.state in ACTIVE_STATES
            ]
            if busy:
                raise FailedPreconditionError(
                    f"session {parent!r} rejects overlapping tasks and {busy[0].name!r} "
                    f"of service {service_id!r} is still active"
                )

        task = resources_pb2.Task()
        task.CopyFrom(requested)
        task.name = str(name)
        task.state = PENDING
        task.ClearField("timeout")
        for field in (
            "result",
            "error",
            "input_request",
            "start_time",
            "end_time",
            "expire_time",
        ):
            task.ClearField(field)
        task.ttl.CopyFrom(session.task_ttl)
        task.attempt_count = 0
        task.cancel_requested = False
        task.replica_id = ""
        policy = resources_pb2.RetryPolicy()
        policy.CopyFrom(service.retry_policy)
        policy.MergeFrom(requested.retry_policy)
        task.retry_policy.CopyFrom(policy)
        default = proto_time.seconds(service.default_timeout)
        if default and (not timeout or requested.parent_task):
            # A child's timeout is what remains of its parent's, not a choice: the
            # service's own timeout (e.g. how long a person may take) still bounds it.
            timeout = min(timeout, default) if timeout else default
        deadlines = []
        if timeout:
            deadlines.append(time.time() + timeout)
        if call_deadline is not None:
            deadlines.append(call_deadline)
        if deadlines:
            task.deadline.CopyFrom(proto_time.timestamp(min(deadlines)))
        stamp = proto_time.now()
        task.create_time.CopyFrom(stamp)
        task.update_time.CopyFrom(stamp)
        # Its place in the creation order; the index entry lives as long as the session
        # might, plus the time the task is kept once finished.
        task.create_sequence = await task_index.add(
            state.js,
            state.topology,
            name,
            service_id,
            child=bool(task.parent_task),
            ttl=proto_time.seconds(session.ttl) + proto_time.seconds(session.task_ttl),
        )

        if await state.tasks.create(task_key(name), task) is None:
            # The same request_id was seen before (or a concurrent call won the race).
            task = await state.tasks.get(task_key(name), str(name))
            age = time.time() - proto_time.epoch_seconds(task.create_time)
            if task.state == PENDING and task.attempt_count == 0 and age < DUPLICATE_WINDOW:
                # Maybe never queued: the first call may have ended before its publish.
                # Within the window JetStream drops the copy if it was queued after all.
                await _publish(state, task, service_id, session)
            return task
        # Counted with its record, once: a retried create finds the record above.
        metrics.TASKS_CREATED.labels(service_id).inc()
        failpoint("task_creation.recorded")
        await _publish(state, task, service_id, session)
        logger.info(
            "task %s created for service %s", name, service_id, extra=about_task(name, service_id)
        )
        return task


async def _publish(
    state: MeshState,
    task: resources_pb2.Task,
    service_id: str,
    session: resources_pb2.Session,
) -> None:
    """Queue the task for its service (once: Nats-Msg-Id is the task id)."""
    task_id = task.name.rpartition("/")[2]
    envelope = resources_pb2.Envelope(
        id=task_id,
        task_assignment=resources_pb2.TaskAssignment(task=task, session_ttl=session.ttl),
    )
    envelope.publish_time.CopyFrom(task.create_time)
    with store_errors(f"queueing task {task.name}"):
        await state.js.publish(
            state.topology.task_subject(service_id),
            envelope.SerializeToString(),
            # The trace context too: the attempts continue the creator's trace.
            headers=tracing.inject({"Nats-Msg-Id": task_id}),
        )
