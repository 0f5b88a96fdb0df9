"""A store that does not answer for a while (a NATS node killed, the streams it led
electing new leaders) costs a running attempt time, not one of its task's attempts
(issue 12, "correct under faults").

When the leader of a 3-node cluster was SIGKILLed, an attempt that had run its workflow
found the session-state stream without a leader (NoStreamResponseError) when it
committed; it handed the task back after its RUNNING record had counted an attempt,
and the next delivery, a second later, met the same election. Three of those and the
fourth delivery failed the task: "the task was delivered 4 times (its replicas stopped
or crashed while running it); max_attempts is 3".

The fault is injected at the exact point (core/failpoints.py): the commit raises what
an election gives, as many times as the test says.
"""

from __future__ import annotations

from fault_workflows import RUNS, AppendWorkflow
from nats.js.errors import NoStreamResponseError

from llama_mesh.core.failpoints import armed
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2


class Election:
    """The session-state stream has no leader for the next `answers_lost` writes."""

    def __init__(self, answers_lost: int) -> None:
        self.left = answers_lost

    def commit(self) -> None:
        if self.left:
            self.left -= 1
            raise NoStreamResponseError


async def test_an_election_at_the_commit_uses_no_attempt_and_runs_the_workflow_once(
    nats: EmbeddedNats,
) -> None:
    async with LocalMesh({"append": AppendWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        RUNS.clear()
        # As many failed commits as the retry policy has attempts (3, the default).
        election = Election(answers_lost=3)
        with armed("session_turn.commit", election.commit):
            handle = await session.create_task("append", item="x")
            assert await handle.result() == ["x"]
        assert election.left == 0
        task = await handle.get()
        assert task.state == resources_pb2.TASK_STATE_SUCCEEDED
        assert task.attempt_count == 1
        assert RUNS == ["x"]  # it waited for the store: the workflow ran once
        # The session's state took the run once: the next run appends to it.
        assert await session.run("append", item="y") == ["x", "y"]


async def test_a_commit_whose_answer_was_lost_is_found_committed(nats: EmbeddedNats) -> None:
    # The write landed and its answer did not come back (the leader died right after
    # storing it): the commit made again finds its own outcome, and the run is not
    # applied twice.
    async with LocalMesh({"append": AppendWorkflow()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        RUNS.clear()
        election = Election(answers_lost=1)
        with armed("session_turn.committed", election.commit):
            handle = await session.create_task("append", item="x")
            assert await handle.result() == ["x"]
        assert election.left == 0
        assert (await handle.get()).attempt_count == 1
        assert RUNS == ["x"]
        assert await session.run("append", item="y") == ["x", "y"]
