"""Token usage of every LLM call a run makes, from llama-index's instrumentation events.

llama-index dispatches ``LLMChatStartEvent`` / ``LLMChatEndEvent`` (and the completion
pair) around every call of any of its LLM classes. One event handler on the root
dispatcher, installed once per process, reads the counts the endpoint reported and
hands them to the run in whose asyncio context the call was made (a contextvar that
``collect_usage`` sets). A call of one of the run's steps is written into the run's
event stream as ``LLMCallUsage`` from that step, so the runner sees it in order with
the step's other events (an agent's inference step ends after its usage).

OpenAI-compatible endpoints report usage in a stream's last chunk only when asked
(``stream_options.include_usage``): ``ask_for_stream_usage(llm)`` asks.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.llms import LLM
from llama_index.llms.openai import OpenAI
from llama_index_instrumentation import get_dispatcher
from workflows import Context
from workflows.errors import WorkflowRuntimeError
from workflows.events import Event

# The instrumentation tag a workflow run puts on the events dispatched inside it.
RUN_ID_TAG = "llamaindex.run_id"


class LLMCallUsage(Event):
    """One LLM call's tokens, as written into the run's event stream (internal)."""

    model: str
    prompt_tokens: int
    completion_tokens: int


class UsageSink:
    """Where the LLM calls of one run report.

    A call made by one of the run's own steps is written into the run's event stream
    from that step (in order with the step's other events). A call made elsewhere (a
    workflow the step runs in-process, a thread) waits in ``pending`` until the runner
    takes it with the next event it sees.
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self._pending: list[LLMCallUsage] = []
        self._lock = threading.Lock()

    def record(self, usage: LLMCallUsage, run_id: str | None) -> None:
        if run_id is not None and run_id == self.run_id:
            try:
                Context.get_step_context().write_event_to_stream(usage)
                return
            except WorkflowRuntimeError:
                pass  # not in a step after all
        with self._lock:
            self._pending.append(usage)

    def take_pending(self) -> list[LLMCallUsage]:
        with self._lock:
            pending, self._pending = self._pending, []
        return pending


_sink: contextvars.ContextVar[UsageSink | None] = contextvars.ContextVar(
    "llama_mesh_usage_sink", default=None
)


def _counts(response: Any) -> tuple[int, int]:
    """(prompt, completion) tokens the endpoint reported in a Chat/CompletionResponse."""
    if response is None:
        return 0, 0
    extra = getattr(response, "additional_kwargs", None) or {}
    if "prompt_tokens" in extra or "completion_tokens" in extra:
        return int(extra.get("prompt_tokens") or 0), int(extra.get("completion_tokens") or 0)
    raw = getattr(response, "raw", None)
    usage = raw.get("usage") if isinstance(raw, dict) else getattr(raw, "usage", None)
    if usage is None:
        return 0, 0

    def field(*names: str) -> int:
        for name in names:
            value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
            if isinstance(value, int):
                return value
        return 0

    return field("prompt_tokens", "input_tokens"), field("completion_tokens", "output_tokens")


class _UsageHandler(BaseEventHandler):
    """Turns the end of every LLM call into an LLMCallUsage for the run that made it."""

    models: dict[str, str] = {}

    @classmethod
    def class_name(cls) -> str:
        return "LlamaMeshUsageHandler"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, LLMChatStartEvent | LLMCompletionStartEvent):
            sink = _sink.get()
            if sink is not None and event.span_id is not None:
                self.models[event.span_id] = str(event.model_dict.get("model_name") or "")
            return
        if not isinstance(event, LLMChatEndEvent | LLMCompletionEndEvent):
            return
        model = self.models.pop(event.span_id, "") if event.span_id is not None else ""
        sink = _sink.get()
        if sink is None:
            return
        prompt, completion = _counts(event.response)
        usage = LLMCallUsage(model=model, prompt_tokens=prompt, completion_tokens=completion)
        sink.record(usage, event.tags.get(RUN_ID_TAG))


_installed = threading.Lock()
_handler: _UsageHandler | None = None


def install() -> None:
    """Add the handler to llama-index's root dispatcher (once per process)."""
    global _handler
    with _installed:
        if _handler is None:
            _handler = _UsageHandler()
            get_dispatcher().add_event_handler(_handler)


@contextlib.contextmanager
def collect_usage(sink: UsageSink) -> Iterator[None]:
    """LLM calls made in this context (and the tasks it starts) report to `sink`."""
    install()
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def ask_for_stream_usage(llm: LLM) -> None:
    """Make an OpenAI(-compatible) LLM ask streamed calls for their usage.

    Without ``stream_options.include_usage`` a streamed chat completion reports no token
    counts. Other LLM classes report usage their own way and are left alone.
    """
    if isinstance(llm, OpenAI) and "stream_options" not in llm.additional_kwargs:
        llm.additional_kwargs = {
            **llm.additional_kwargs,
            "stream_options": {"include_usage": True},
        }
