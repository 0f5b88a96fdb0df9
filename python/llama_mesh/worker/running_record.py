"""The write that records an attempt RUNNING, and so counts it.

It starts when the attempt is about to take its session's turn (alongside the turn's
own write), and the workflow runs only once it landed: a store that refuses it (full)
hands the task back before anything ran, so re-execution stays bounded by the
attempts. A store that does not answer for a while is waited out
(jetstream/outages.py). An attempt that ends before it runs drops the write.
"""

from __future__ import annotations

import asyncio

from llama_mesh.core.attempt_policy import Run
from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.outages import through_outages
from llama_mesh.jetstream.remote_journal import Journal
from llama_mesh.v1 import resources_pb2

Recorded = tuple[resources_pb2.Task, int]  # a task record and its revision


class AlreadyFinished(Exception):
    """The task reached a final state elsewhere before this attempt started."""


class RunningRecord:
    """Attempt `start` of task `name` RUNNING, written from `known` (the record read
    when the task was delivered)."""

    def __init__(
        self, journal: Journal, name: TaskName, start: Run, replica_id: str, known: Recorded
    ) -> None:
        self._journal = journal
        self._name = name
        self._start = start
        self._replica_id = replica_id
        self._known = known
        self._write: asyncio.Task[Recorded] | None = None

    def start(self) -> None:
        """Start the write (once)."""
        if self._write is None:
            self._write = asyncio.create_task(
                through_outages(
                    lambda: self._journal.record_from(
                        self._name,
                        self._start.event,
                        replica_id=self._replica_id,
                        publish=False,
                        known=self._known,
                    ),
                    f"recording attempt {self._start.attempt} of {self._name} RUNNING",
                )
            )

    async def landed(self) -> Recorded:
        """The record once the write landed (started now if it was not);
        AlreadyFinished if the task had finished meanwhile."""
        self.start()
        assert self._write is not None
        try:
            return await asyncio.shield(self._write)
        except FailedPreconditionError:
            raise AlreadyFinished from None

    async def landed_if_started(self) -> None:
        """Once the write landed, if it was started (AlreadyFinished as `landed`)."""
        if self._write is not None:
            await self.landed()

    async def ended(self) -> None:
        """Once the write ended, however it did."""
        if self._write is not None:
            await asyncio.gather(self._write, return_exceptions=True)

    async def drop(self) -> None:
        """Cancel the write if it is still going; return once it ended."""
        if self._write is not None and not self._write.done():
            self._write.cancel()
        await self.ended()
