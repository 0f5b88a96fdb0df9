"""`llama-mesh inbox` and `llama-mesh answer TASK TEXT`: what waits for a person, and
the person's answer.

    llama-mesh inbox                                      # every waiting task, all sessions
    llama-mesh answer sessions/demo/tasks/abc "Ship it"   # a HumanResponseEvent
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from llama_mesh.cli.target import (
    ConnectTimeout,
    ControlPlaneOption,
    FileOption,
    Output,
    OutputOption,
    Target,
    out,
)
from llama_mesh.cli.views import task_view, timestamp
from llama_mesh.client import AsyncClient
from llama_mesh.core.json_values import to_python
from llama_mesh.core.lifecycle import check_waiting
from llama_mesh.v1 import resources_pb2


def inbox_view(task: resources_pb2.Task) -> dict[str, Any]:
    """A waiting task as `inbox -o json` prints it: what it asks, and since when."""
    request = task.input_request
    payload = to_python(request.payload) if request.HasField("payload") else None
    prompt = payload.get("prefix") if isinstance(payload, dict) else None
    return {
        "task": task.name,
        "service": task.service,
        "parent_task": task.parent_task or None,
        "prompt": prompt if isinstance(prompt, str) else None,
        "request": payload,
        "event_type": request.event_type,
        "waiting_since": timestamp(task.update_time),
    }


def _print_inbox(items: list[dict[str, Any]]) -> None:
    if not items:
        out.print("nothing waits for an answer")
        return
    for item in items:
        out.print(f"{escape(item['task'])} [dim]({escape(item['service'])})[/]")
        text = item["prompt"] if item["prompt"] is not None else str(item["request"])
        for line in text.strip().splitlines():
            out.print(f"  {escape(line)}" if line else "")


def inbox(
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Every task, in every session, that waits for a person's answer, oldest first."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        waiting = sorted(await client.inbox(), key=lambda t: t.update_time.ToNanoseconds())
        items = [inbox_view(t) for t in waiting]
        target.emit(items, lambda: _print_inbox(items))

    target.run(main)


def answer(
    task: Annotated[str, typer.Argument(help="sessions/{session}/tasks/{task}")],
    text: Annotated[str, typer.Argument(help="The answer.")],
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Answer a task that waits for a person (sends a HumanResponseEvent with TEXT)."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        # The same answer sent again passes as a retried call (task_answers.py): a
        # second `answer` said "answered" of a task that had finished meanwhile.
        check_waiting(await client.get_task(task))
        view = task_view(await client.answer(task, text))
        target.emit(view, lambda: out.print(f"{escape(task)}: answered; now {view['state']}"))

    target.run(main)
