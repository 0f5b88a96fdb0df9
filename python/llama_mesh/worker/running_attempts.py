"""The attempts running on one replica, by task id.

A delivery becomes an attempt here (attempt.take) and is known by its task's id while it
runs: a second delivery of the same task, a cancel signal and the events a child or an
orchestrator publishes for the task find it by that id. A second delivery that comes
while the first is still being read is handed to the attempt that read begins.
"""

from __future__ import annotations

import logging
from typing import Any

from nats.aio.msg import Msg

from llama_mesh.core import proto_time
from llama_mesh.core.failpoints import failpoint
from llama_mesh.core.json_values import to_value
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import task_key, ttl_of
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker import task_spans
from llama_mesh.worker.attempt import Attempt, Worker, take

logger = logging.getLogger(__name__)


class RunningAttempts:
    """The attempts of one replica; `finished_count` counts those that left,
    `handed_back_count` those of them that a drain handed back as they waited for input."""

    def __init__(self) -> None:
        self._by_task: dict[str, Attempt] = {}
        # Tasks whose delivery is being read (attempt.take), and their newest delivery.
        self._arriving: dict[str, Msg] = {}
        self.finished_count = 0
        self.handed_back_count = 0
        self._draining = False

    def __len__(self) -> int:
        return len(self._by_task)

    def tasks(self) -> list[resources_pb2.Task]:
        return [attempt.task for attempt in self._by_task.values()]

    def hand_back_waiting(self) -> None:
        """The replica drains: an attempt that waits for input, now or later, hands its
        task back at once instead of holding the drain until its deadline (a person
        may answer in hours)."""
        self._draining = True
        for attempt in self._by_task.values():
            attempt.hand_back_once_waiting()

    async def run(self, worker: Worker, msg: Msg) -> None:
        """Run the task of one delivery from the service's consumer to its end."""
        envelope = resources_pb2.Envelope.FromString(msg.data)
        if not envelope.HasField("task_assignment"):
            logger.error("service %s: not a task on %s; dropped", worker.service, msg.subject)
            await msg.term()
            return
        assignment = envelope.task_assignment
        name = TaskName.parse(assignment.task.name)
        failpoint("attempt.delivered")
        running = self._by_task.get(name.task_id)
        if running is not None:
            # Delivered again while its attempt runs here: the server did not hear the
            # attempt's progress (e.g. its consumer was electing a leader). That attempt
            # goes on, answering for this delivery; a second one would take its turn
            # over, count an attempt and run the workflow again.
            running.redelivered(msg)
            return
        if name.task_id in self._arriving:
            # Delivered again while its first delivery is still being read (the store
            # did not answer for longer than the ack wait): the attempt that reading
            # begins answers for this one.
            self._arriving[name.task_id] = msg
            return
        session_ttl = (
            proto_time.seconds(assignment.session_ttl)
            if assignment.HasField("session_ttl")
            else None
        )
        with task_spans.attempt_span(msg, envelope, worker.service, worker.replica_id):
            self._arriving[name.task_id] = msg
            try:
                attempt = await take(worker, msg, name, session_ttl)
            finally:
                newest = self._arriving.pop(name.task_id)
            if attempt is None:
                return  # settled (a newer delivery is, as it comes again)
            if newest is not msg:
                attempt.redelivered(newest)
            # Registered before the attempt records RUNNING: a control plane that sees
            # the task running and signals a cancel finds it here.
            self._by_task[name.task_id] = attempt
            if self._draining:
                attempt.hand_back_once_waiting()
            try:
                await attempt.run()
            finally:
                self._by_task.pop(name.task_id, None)
                self.finished_count += 1
                if attempt.handed_back:
                    self.handed_back_count += 1

    async def on_cancel(self, msg: Msg) -> None:
        """A cancel signal for some task: stop it if this replica runs it."""
        attempt = self._by_task.get(msg.subject.rpartition(".")[2])
        if attempt is not None:
            signal = resources_pb2.Envelope.FromString(msg.data).task_cancellation
            attempt.cancel(signal.reason)

    async def recheck_inputs(self) -> None:
        """After a reconnect: answers sent meanwhile reached no subscription."""
        for attempt in self._by_task.values():
            attempt.recheck_inputs()

    async def publish_event(
        self, state: MeshState, task: str, type: str, payload: dict[str, Any], event_id: str
    ) -> None:
        """Publish an event on a task's stream for a running task (a child announced,
        an orchestrator's decision); `event_id` de-duplicates a replayed one."""
        event = resources_pb2.TaskEvent(type=type)
        event.payload.CopyFrom(to_value(payload, f"event {type}"))
        name = TaskName.parse(task)
        running = self._by_task.get(name.task_id)
        if running is not None:
            # In order with the events its run streams (announced after the tool call
            # that made the child, say).
            await running.publish(event, event_id)
            return
        found = await state.tasks.find(task_key(name))
        ttl = ttl_of(found[0]) if found is not None else None
        await state.journal.publish(name, event, event_id=event_id, ttl=ttl)
