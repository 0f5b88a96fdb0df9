"""Marks in a run's event stream: a step learns that the events it wrote so far were
handed on to be stored.

A step's events reach the task's stream through the workflow's event stream: the
runner (workflow_runner.py) reads them, in the order they were written, and hands each
to the attempt's ordered outbox (event_outbox.py). A step that acts on the mesh because
of an event it wrote (an agent's ToolCall, then the tool's child task) must not act
while that event may still sit in the stream's queue. So it writes a mark after its
events and awaits it (``handed_on``): the runner, reaching the mark, has handed on
everything written before it. Awaiting the outbox after that (``RunningTask.stored``)
means those events are stored.

A mark never reaches the task's stream. One whose step stopped waiting (cancelled) is
read and dropped like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
from collections.abc import Iterator

from llama_index_instrumentation.dispatcher import active_instrument_tags
from workflows import Context
from workflows.errors import WorkflowRuntimeError
from workflows.events import Event

from llama_mesh.worker.llm_usage import RUN_ID_TAG


class StreamMark(Event):
    """Written into a run's event stream after a step's events (internal, never published)."""

    mark: int


class RunEndedError(RuntimeError):
    """The run's event stream is no longer read, so a mark in it will not be reached."""


class StreamMarks:
    """The marks of the run whose stream the runner reads (`run_id`, set once the run
    has started), each awaited by the step that wrote it."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self._numbers = itertools.count()
        self._waiting: dict[int, asyncio.Future[None]] = {}

    async def handed_on(self, ctx: Context) -> None:
        """Write a mark into `ctx`'s stream; return once the runner has read it."""
        number = next(self._numbers)
        reached = asyncio.get_running_loop().create_future()
        self._waiting[number] = reached
        try:
            ctx.write_event_to_stream(StreamMark(mark=number))
            await reached
        finally:
            self._waiting.pop(number, None)

    def reached(self, mark: StreamMark) -> None:
        """The runner read `mark`: every event written before it was handed on."""
        reached = self._waiting.pop(mark.mark, None)
        if reached is not None and not reached.done():
            reached.set_result(None)

    def close(self) -> None:
        """The runner stops reading: no step waits for a mark forever."""
        waiting, self._waiting = self._waiting, {}
        for reached in waiting.values():
            if not reached.done():
                reached.set_exception(RunEndedError("the run's event stream is no longer read"))


_marks: contextvars.ContextVar[StreamMarks | None] = contextvars.ContextVar(
    "llama_mesh_stream_marks", default=None
)


@contextlib.contextmanager
def reading_marks(marks: StreamMarks) -> Iterator[None]:
    """The runner reads the marks of the run it starts in this block."""
    token = _marks.set(marks)
    try:
        yield
    finally:
        _marks.reset(token)
        marks.close()


async def events_handed_on() -> None:
    """Return once every event the calling step wrote into its run's stream was handed
    on by the runner; at once when the caller is not a step of a run the runner reads
    (e.g. of a workflow run in-process inside a step: its stream is not the task's)."""
    marks = _marks.get()
    if marks is None or marks.run_id is None:
        return
    if active_instrument_tags.get().get(RUN_ID_TAG) != marks.run_id:
        return
    try:
        ctx = Context.get_step_context()
    except WorkflowRuntimeError:
        return
    await marks.handed_on(ctx)
