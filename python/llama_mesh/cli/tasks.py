"""`llama-mesh tasks list | get | cancel`.

llama-mesh tasks list --state WAITING_FOR_INPUT     # the human-in-the-loop inbox
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from llama_mesh.cli.target import (
    EXIT_USAGE,
    ConnectTimeout,
    ControlPlaneOption,
    FileOption,
    Output,
    OutputOption,
    Target,
    out,
    print_table,
)
from llama_mesh.cli.views import task_view, tasks_table
from llama_mesh.client import AsyncClient
from llama_mesh.v1 import resources_pb2


def _states(target: Target, names: list[str]) -> list[resources_pb2.TaskState.ValueType]:
    states = []
    for name in names:
        try:
            states.append(resources_pb2.TaskState.Value("TASK_STATE_" + name.upper()))
        except ValueError:
            valid = [
                n.removeprefix("TASK_STATE_")
                for n, _ in resources_pb2.TaskState.items()
                if not n.endswith("UNSPECIFIED")
            ]
            target.fail(
                EXIT_USAGE,
                "InvalidArgumentError",
                f"--state {name!r} is not a task state; use one of {', '.join(valid)}",
            )
    return states


def tasks_list(
    session: Annotated[
        str, typer.Option("--session", "-s", help="Session id ('-': all sessions).")
    ] = "-",
    state: Annotated[
        list[str] | None,
        typer.Option(help="Only tasks in this state, e.g. RUNNING, WAITING_FOR_INPUT (repeat)."),
    ] = None,
    service: Annotated[str, typer.Option(help="Only tasks of this service.")] = "",
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """List tasks, newest first."""
    target = Target(control_plane, file, output, connect_timeout)
    states = _states(target, state or [])

    async def main(client: AsyncClient) -> None:
        found = await client.list_tasks(session, states=states, service=service, limit=limit)
        tasks = [task_view(t) for t in found]
        target.emit(
            tasks,
            lambda: print_table(tasks_table(tasks, "tasks", wide=target.wide), wide=target.wide),
        )

    target.run(main)


def tasks_get(
    task: Annotated[str, typer.Argument(help="sessions/{session}/tasks/{task}")],
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Show a task: state, input, result or error."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        view = task_view(await client.get_task(task))
        target.emit(view, lambda: _show_task(view))

    target.run(main)


def _show_task(view: dict[str, Any]) -> None:
    """The task as JSON, and below it the traceback of its failure, as Python prints it."""
    error = view["error"]
    traceback = error.pop("traceback", None) if error else None
    out.print_json(json.dumps(view))
    if traceback:
        out.print(f"\nThe task's traceback, on its replica:\n{escape(traceback)}")


def tasks_cancel(
    task: Annotated[str, typer.Argument(help="sessions/{session}/tasks/{task}")],
    reason: Annotated[str, typer.Option(help="Why; kept in the task's error.")] = "",
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Cancel a task (a no-op for a finished one)."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        handle = client.task(task)
        cancelled = await handle.cancel(reason)
        assert handle.task is not None
        view = {**task_view(handle.task), "already_finished": not cancelled}
        message = "cancel requested" if cancelled else "it had finished already"
        target.emit(view, lambda: out.print(f"{task}: {message}"))

    target.run(main)
