"""A control plane's side of the replicas' journal (control_plane/journal_service.py):
a plain publish of a task it knows (a batch of token deltas) leaves for the store from
the subscription's callback, before the request's own task starts, and is still stored
in order, once, and answered with its sequences (issue 14, token latency)."""

from __future__ import annotations

import asyncio

from llama_mesh.control_plane.journal_service import ANSWER_TASK
from llama_mesh.core.failpoints import armed
from llama_mesh.jetstream.event_history import events_so_far
from llama_mesh.jetstream.remote_journal import RemoteJournal
from llama_mesh.v1 import resources_pb2

from paused_echo import PausedEcho

RUNNING = resources_pb2.TASK_STATE_RUNNING


def _delta(n: int) -> resources_pb2.TaskEvent:
    event = resources_pb2.TaskEvent(type="Delta", attempt=1)
    event.payload.struct_value.update({"n": n})
    return event


def _sending_task() -> str:
    task = asyncio.current_task()
    assert task is not None
    return task.get_name()


async def test_a_known_tasks_publish_is_sent_before_its_answer_starts(
    paused_echo: PausedEcho,
) -> None:
    state, name = paused_echo.state, paused_echo.name
    journal = RemoteJournal(state.nc, state.topology, "echo")
    senders: list[str] = []
    with armed("journal.publish_many", lambda: senders.append(_sending_task())):
        # Not known yet: its task reads the record (whose it is) before sending.
        first = await journal.publish_many(name, [(_delta(0), "")])
        # Known now: sent from the callback, the answer's task only awaits the store.
        rest = await journal.publish_many(name, [(_delta(n), "") for n in range(1, 4)])
        # The same batch again (an answer lost): stored once.
        again = [(_delta(n), f"{name.task_id}.d{n}") for n in range(4, 6)]
        sequences = await journal.publish_many(name, again)
        assert await journal.publish_many(name, again) == sequences
    assert senders[0].startswith(ANSWER_TASK)
    assert not any(sender.startswith(ANSWER_TASK) for sender in senders[1:]), senders
    events = await events_so_far(state.js, state.topology, name.task_id)
    assert [int(e.payload.struct_value.fields["n"].number_value) for e in events] == list(range(6))
    assert [e.state for e in events] == [RUNNING] * 6
    assert [*first, *rest, *sequences] == sorted({*first, *rest, *sequences})
