"""How `llama-mesh run` shows an agent's task live: the answer as the model writes it,
each tool call with its arguments and its result, and the tokens each step used.

    2 + 3?                                  <- nothing: the model asked for a tool
    · 36 tokens
    → add {"a": 2, "b": 3}
    ← add: 5
    2 + 3 = 5
    · 49 tokens
    tokens: 85 (75 prompt, 10 completion) in 2 LLM calls

Other events of the task are shown as `llama-mesh run` shows any event.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from llama_mesh.client import StreamedEvent
from llama_mesh.core import agent_events as ae
from llama_mesh.v1 import resources_pb2


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def usage_line(usage: resources_pb2.TokenUsage) -> str:
    """`tokens: 85 (75 prompt, 10 completion) in 2 LLM calls`."""
    calls = "call" if usage.llm_calls == 1 else "calls"
    return (
        f"tokens: {usage.total_tokens} ({usage.prompt_tokens} prompt, "
        f"{usage.completion_tokens} completion) in {usage.llm_calls} LLM {calls}"
    )


class AgentStream:
    """Prints the agent vocabulary's events of one task on `console`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._line_open = False  # deltas printed, no newline yet

    def _end_line(self) -> None:
        if self._line_open:
            self.console.print()
            self._line_open = False

    def _say(self, markup: str) -> None:
        self._end_line()
        self.console.print(markup, highlight=False, soft_wrap=True)

    def show(self, event: StreamedEvent) -> bool:
        """Print `event` if it is of the agent vocabulary; False (nothing printed) if not."""
        payload = event.agent_event
        if payload is None:
            self._end_line()
            return False
        if isinstance(payload, ae.TextDelta):
            self.console.print(escape(payload.text), end="", highlight=False, soft_wrap=True)
            self._line_open = True
        elif isinstance(payload, ae.InferenceCompleted | ae.TokenUsage):
            tokens = (event.usage or {}).get("total_tokens")
            if tokens is not None:
                self._say(f"[dim]· {tokens} tokens[/]")
            else:
                self._end_line()
        elif isinstance(payload, ae.ToolCallStarted):
            arguments = escape(_clip(json.dumps(payload.arguments, sort_keys=True)))
            self._say(f"[cyan]→ {escape(payload.tool_name)}[/] {arguments}")
        elif isinstance(payload, ae.ToolCallCompleted):
            colour = "red" if payload.is_error else "green"
            output = escape(_clip(payload.output))
            self._say(f"[{colour}]← {escape(payload.tool_name)}:[/] {output}")
        return True

    def finish(self, task: Any) -> None:
        """End the output; the task's token total, if it used any."""
        self._end_line()
        if task.HasField("usage") and task.usage.llm_calls:
            self.console.print(f"[dim]{usage_line(task.usage)}[/]", highlight=False)
