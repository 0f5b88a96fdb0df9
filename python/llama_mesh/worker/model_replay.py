"""A turn that runs again replays the model's answers of its earlier attempt.

An attempt of an agent task may stop before the task ends: its replica crashes or
restarts, e.g. while the turn waits for the caller's client tools. The task is then
delivered again and a new attempt runs the turn from its start. Calling the model
again would cost tokens and, worse, might bring other answers (other tool calls, with
other call ids, than the ones the caller is about to answer). So each inference step's
``InferenceCompleted`` event, which holds the model's whole message, is the record:
a new attempt reads the record of the attempt that got furthest (``recorded_answers``),
and the models of the built-in agent service (``ReplayingLLM``) answer its first calls
from it, in order, without calling the endpoint. Calls beyond the record reach the
model. Tool calls replay through the mesh's own records (child tasks, stored answers).

    async with replaying(await recorded_answers(state, name, attempt)):
        ...run the agent...
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from llama_mesh.core import agent_events as ae
from llama_mesh.core.json_values import to_python
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.event_history import events_so_far
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)


@dataclass
class RecordedAnswers:
    """The model's messages of an earlier attempt, in the order it answered them."""

    messages: list[ae.AssistantMessage] = field(default_factory=list)

    def take(self) -> ae.AssistantMessage | None:
        return self.messages.pop(0) if self.messages else None


_answers: contextvars.ContextVar[RecordedAnswers | None] = contextvars.ContextVar(
    "llama_mesh_recorded_answers", default=None
)


@contextlib.contextmanager
def replaying(answers: RecordedAnswers | None) -> Iterator[None]:
    """Calls of a ReplayingLLM in this context (and the tasks it starts) take `answers`."""
    token = _answers.set(answers)
    try:
        yield
    finally:
        _answers.reset(token)


def by_attempt(events: Sequence[resources_pb2.TaskEvent]) -> dict[int, list[ae.AssistantMessage]]:
    """Each attempt's model messages, from its InferenceCompleted events."""
    found: dict[int, list[ae.AssistantMessage]] = {}
    for event in events:
        if event.type != ae.InferenceCompleted.TYPE:
            continue
        try:
            completed = ae.InferenceCompleted.model_validate(to_python(event.payload))
        except ValidationError:
            continue
        found.setdefault(event.attempt, []).append(completed.message)
    return found


async def recorded_answers(
    state: MeshState, name: TaskName, attempt: int
) -> RecordedAnswers | None:
    """The answers of the earlier attempt of the task that got furthest (None for a
    first attempt, or when no earlier attempt got an answer)."""
    if attempt <= 1:
        return None
    events = await events_so_far(state.js, state.topology, name.task_id, include_final=False)
    earlier = {n: m for n, m in by_attempt(events).items() if n < attempt}
    if not earlier:
        return None
    messages = max(earlier.values(), key=len)
    logger.info("task %s: attempt %d replays %d model answers", name, attempt, len(messages))
    return RecordedAnswers(list(messages))


def take_recorded() -> ae.AssistantMessage | None:
    """The next recorded answer of this context's replay (None: ask the model)."""
    answers = _answers.get()
    return answers.take() if answers is not None else None
