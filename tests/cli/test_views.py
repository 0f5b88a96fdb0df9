"""The CLI's tables: each row's task told apart from the others at 80 columns."""

from __future__ import annotations

import io

from rich.console import Console

from llama_mesh.cli.views import tasks_table


def _rendered(names: list[str]) -> str:
    tasks = [
        {"name": n, "service": "echo", "state": "SUCCEEDED", "error": None, "attempts": 1}
        | {"create_time": "2026-12-01T13:14:45.063302Z"}
        for n in names
    ]
    out = io.StringIO()
    Console(file=out, width=80).print(tasks_table(tasks, "tasks"))
    return out.getvalue()


def test_tasks_created_within_seconds_of_each_other_are_told_apart() -> None:
    # Ids of tasks created without a request id start with their creation time.
    first = "sessions/demo/tasks/18ed23860e37d75b4d29e73f"
    second = "sessions/demo/tasks/18ed2386f568c54d07dcf088"
    text = _rendered([first, second])
    assert "demo/18ed23860…" in text and "demo/18ed2386f…" in text, text
    assert max(len(line) for line in text.splitlines()) <= 80, text


def test_ids_that_differ_early_keep_their_first_eight() -> None:
    text = _rendered(
        [
            "sessions/53ad9a594e1b4c0f8ed2ae2bd1a0c7a5/tasks/77480b90c9d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5",
            "sessions/aa5b2dbd6f3f4cd7942a7fa6eee5484a/tasks/8b6d274c01e6819c0b640ad45f1bfe602993a475",
        ]
    )
    assert "53ad9a59…/77480b90…" in text and "aa5b2dbd…/8b6d274c…" in text, text
