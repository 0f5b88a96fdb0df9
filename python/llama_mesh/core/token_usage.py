"""Token counts of LLM calls (the TokenUsage message): adding them up, and budgets.

usage = of_call("gpt-4o-mini", prompt_tokens=12, completion_tokens=3)
add(task.usage, usage)          # task.usage.total_tokens grows by 15
"""

from __future__ import annotations

from typing import Any

from llama_mesh.core.errors import TokenBudgetExceededError
from llama_mesh.v1 import resources_pb2

TokenUsage = resources_pb2.TokenUsage


def of_call(model: str, prompt_tokens: int, completion_tokens: int) -> TokenUsage:
    """The usage of one LLM call of `model`."""
    usage = TokenUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        llm_calls=1,
    )
    usage.models[model or "unknown"].CopyFrom(
        TokenUsage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            llm_calls=1,
        )
    )
    return usage


def _add_counts(into: TokenUsage, other: TokenUsage) -> None:
    into.prompt_tokens += other.prompt_tokens
    into.completion_tokens += other.completion_tokens
    into.total_tokens += other.total_tokens
    into.llm_calls += other.llm_calls


def add(into: TokenUsage, other: TokenUsage) -> None:
    """Add `other` to `into` in place, model by model."""
    _add_counts(into, other)
    for model, counts in other.models.items():
        _add_counts(into.models[model], counts)


def is_empty(usage: TokenUsage) -> bool:
    return not (usage.llm_calls or usage.total_tokens)


def to_json(usage: TokenUsage) -> dict[str, Any]:
    """Plain JSON, snake_case, every count present (for the CLI and logs)."""

    def counts(u: TokenUsage) -> dict[str, int]:
        return {
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens,
            "llm_calls": u.llm_calls,
        }

    return {**counts(usage), "models": {m: counts(u) for m, u in sorted(usage.models.items())}}


def check_budget(session: resources_pb2.Session, *, running: TokenUsage | None = None) -> None:
    """Raise TokenBudgetExceededError if the session's usage crossed its token budget.

    Before a task starts (`running` is None) a session that reached its budget has
    nothing left; while it runs, `running` is the task's usage so far, and the task
    fails once the session's usage exceeds the budget.
    """
    budget = session.token_budget
    used = session.usage.total_tokens
    if budget <= 0 or used < budget or (running is not None and used == budget):
        return
    this_run = (
        f" ({running.total_tokens} of them by this task)"
        if running is not None and running.total_tokens
        else ""
    )
    raise TokenBudgetExceededError(
        f"session {session.name!r} has used {session.usage.total_tokens} tokens{this_run} "
        f"of its budget of {budget}: create a new session or raise its token_budget"
    )
