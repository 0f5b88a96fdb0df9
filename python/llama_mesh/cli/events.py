"""`llama-mesh tasks events TASK` and `llama-mesh send-event TASK TYPE`: a task's
event stream, and events sent into a task that waits for input.

    llama-mesh tasks events sessions/demo/tasks/abc --follow
    llama-mesh send-event sessions/demo/tasks/abc HumanResponseEvent --arg response=yes
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from llama_mesh.cli.target import (
    EXIT_USAGE,
    ConnectTimeout,
    ControlPlaneOption,
    FileOption,
    Output,
    OutputOption,
    Target,
    out,
    parse_input,
)
from llama_mesh.cli.views import event_line, event_view, task_state, task_view
from llama_mesh.client import AsyncClient
from llama_mesh.v1 import resources_pb2


def tasks_events(
    task: Annotated[str, typer.Argument(help="sessions/{session}/tasks/{task}")],
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Stream until the task finishes.")
    ] = False,
    after: Annotated[int, typer.Option(help="Only events after this sequence.")] = 0,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """The events of a task (one JSON line each with -o json).

    Without --follow the task must have finished; with it, events are printed as they
    come until the last one.
    """
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        handle = client.task(task)
        current = await handle.get()
        if not follow and current.state not in (
            resources_pb2.TASK_STATE_SUCCEEDED,
            resources_pb2.TASK_STATE_FAILED,
            resources_pb2.TASK_STATE_CANCELLED,
        ):
            target.fail(
                EXIT_USAGE,
                "FailedPrecondition",
                f"{task} is {task_state(current)}; "
                "use --follow to stream its events until it finishes",
            )
        async for event in handle.events(after_sequence=after):
            if target.json:
                print(json.dumps(event_view(event), ensure_ascii=False), flush=True)
            else:
                out.print(event_line(event))

    target.run(main)


def send_event(
    task: Annotated[str, typer.Argument(help="sessions/{session}/tasks/{task}")],
    event_type: Annotated[str, typer.Argument(help="Event type, e.g. HumanResponseEvent.")],
    payload: Annotated[
        str | None, typer.Option("--payload", "-p", help="Event fields as a JSON object.")
    ] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option("--arg", "-a", help="KEY=VALUE event field (VALUE is JSON or a string)."),
    ] = None,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Send an event into a task that waits for input (human in the loop)."""
    target = Target(control_plane, file, output, connect_timeout)
    fields = parse_input(target, payload, arg or [], "--payload")

    async def main(client: AsyncClient) -> None:
        updated = await client.task(task).send_event(event_type, **fields)
        view = task_view(updated)
        target.emit(view, lambda: out.print(f"{task}: sent {event_type}; now {view['state']}"))

    target.run(main)
