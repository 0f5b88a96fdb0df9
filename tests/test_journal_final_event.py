"""A task's final event is stored once, whoever publishes it and however late
(jetstream/journal.py).

The stream's de-duplication by id lasts its duplicate window (2 minutes): a writer that
stalled longer between its record and its event, and the finisher that repaired the
missing event meanwhile, stored two final events (a replay, a history read showed two
ends). The store now refuses a final event on a subject that holds one, and the
refused publisher gets the stored event's sequence. "Past the window" is played by a
publish under another id: the stream has forgotten the first id either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from nats.js.errors import NoStreamResponseError

from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.core.failpoints import FailpointCrash, armed, crash
from llama_mesh.core.lifecycle import cancelled_event, final_event, is_final
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.event_history import events_so_far
from llama_mesh.jetstream.journal import TaskJournal, final_event_id
from llama_mesh.jetstream.outages import through_outages
from llama_mesh.jetstream.remote_journal import RemoteJournal
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2

from mesh_workflows import EchoWorkflow

pytestmark = pytest.mark.timeout(60)

CANCELLED = resources_pb2.TASK_STATE_CANCELLED


@contextlib.asynccontextmanager
async def _pending_task(nats: EmbeddedNats) -> AsyncIterator[tuple[MeshState, TaskName]]:
    """A control plane's state and a task that nobody runs (its replicas paused: the
    test finishes it)."""
    async with LocalMesh({"echo": EchoWorkflow()}, nats_url=nats.url) as mesh:
        for replica in mesh.services["echo"]:
            replica.pause()
        assert mesh.control_plane is not None
        session = await mesh.client.create_session()
        handle = await session.create_task("echo", arg1="x")
        yield mesh.control_plane.state, TaskName.parse(handle.name)


def _journal(state: MeshState) -> TaskJournal:
    assert isinstance(state.journal, TaskJournal)
    return state.journal


async def _final_events(state: MeshState, name: TaskName) -> list[resources_pb2.TaskEvent]:
    """Every final event the stream holds for the task (a history read: all of them)."""
    events = await events_so_far(state.js, state.topology, name.task_id)
    return [event for event in events if is_final(event.state)]


async def test_a_stalled_finisher_that_publishes_after_the_repair_stores_no_second_end(
    nats: EmbeddedNats,
) -> None:
    async with _pending_task(nats) as (state, name):
        journal = _journal(state)
        # The writer records the end, then stalls before its event (crashes here).
        ended = cancelled_event(0, "the first finisher")
        with armed("journal.final_recorded", crash), pytest.raises(FailpointCrash):
            await journal.record(name, ended, event_id=final_event_id(name))
        assert await _final_events(state, name) == []
        # Another finisher is refused (it has finished) and repairs the missing event.
        with pytest.raises(FailedPreconditionError):
            await journal.record(
                name, cancelled_event(0, "the second finisher"), event_id=final_event_id(name)
            )
        [repaired] = await _final_events(state, name)
        # The writer wakes past the duplicate window: the store forgot the id.
        sequence = await journal.publish(name, ended, event_id=f"{name.task_id}.late")
        assert sequence == repaired.sequence
        assert await _final_events(state, name) == [repaired]


async def test_final_events_of_two_finishers_past_the_window_are_stored_once(
    nats: EmbeddedNats,
) -> None:
    async with _pending_task(nats) as (state, name):
        journal = _journal(state)
        task = await journal.record(
            name, cancelled_event(0, "cancelled"), event_id=final_event_id(name)
        )
        assert task.state == CANCELLED
        [stored] = await _final_events(state, name)
        # A redelivery of the finished task republishes its end from the record
        # (delivery.settle), once directly and once as a replica through a control
        # plane (a batch: TaskJournal.publish_many), each past the window.
        again = await journal.publish(name, final_event(task), event_id=f"{name.task_id}.again")
        remote = RemoteJournal(state.nc, state.topology, "echo")
        by_replica = await remote.publish_many(
            name, [(final_event(task), f"{name.task_id}.replica")]
        )
        assert again == stored.sequence
        assert by_replica == [stored.sequence]
        assert await _final_events(state, name) == [stored]


class LostAnswer:
    """The final event is stored and its answer does not come back, once (the stream's
    leader died right after storing it)."""

    def __init__(self) -> None:
        self.lost = False

    def __call__(self) -> None:
        if not self.lost:
            self.lost = True
            raise NoStreamResponseError


async def test_a_finisher_that_lost_the_answer_to_its_final_event_gets_its_sequence(
    nats: EmbeddedNats,
) -> None:
    async with _pending_task(nats) as (state, name):
        journal = _journal(state)
        task = await journal.record(
            name, cancelled_event(0, "cancelled"), event_id=final_event_id(name), publish=False
        )
        lost = LostAnswer()
        with armed("journal.final_published", lost):
            sequence = await through_outages(
                lambda: journal.publish(name, final_event(task), event_id=final_event_id(name)),
                f"publishing the end of {name}",
            )
        assert lost.lost
        [stored] = await _final_events(state, name)
        assert sequence == stored.sequence
