"""`llama-mesh run SERVICE` and `llama-mesh ask TEXT`: run a task, show its events live,
print its result.

llama-mesh run echo --arg arg1=hello           # "hello_result"
llama-mesh ask "What is the secret fact?"      # routed by the deployed orchestrator
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from llama_mesh.cli.agent_stream import AgentStream
from llama_mesh.cli.target import (
    ConnectTimeout,
    ControlPlaneOption,
    FileOption,
    Output,
    OutputOption,
    Target,
    err,
    out,
    parse_input,
)
from llama_mesh.cli.views import event_line, task_view
from llama_mesh.client import AsyncClient, TaskHandle, task_result

CancelOnInterrupt = Annotated[
    bool,
    typer.Option(
        help="Ctrl-C cancels the task too (without it, the task goes on and Ctrl-C "
        "says how to follow or cancel it)."
    ),
]


def run(
    service: Annotated[str, typer.Argument(help="The service to run, e.g. echo.")],
    input: Annotated[
        str | None, typer.Option("--input", "-i", help="Task input as a JSON object.")
    ] = None,
    arg: Annotated[
        list[str] | None,
        typer.Option("--arg", "-a", help="KEY=VALUE input field (VALUE is JSON or a string)."),
    ] = None,
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="Run in this session (created if new).")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Task timeout in seconds.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the task name, exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not show events.")] = False,
    cancel_on_interrupt: CancelOnInterrupt = False,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Run a task of SERVICE; show its events live, then print its result as JSON."""
    target = Target(control_plane, file, output, connect_timeout)
    data = parse_input(target, input, arg or [], "--input")
    target.run(
        _runner(target, service, data, session, timeout, no_wait, quiet, cancel_on_interrupt)
    )


def ask(
    user_msg: Annotated[str, typer.Argument(help="The request, e.g. 'What is the secret fact?'")],
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="Run in this session (created if new).")
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Task timeout in seconds.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the task name, exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not show events.")] = False,
    cancel_on_interrupt: CancelOnInterrupt = False,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Run a task that names no service: the deployed orchestrator routes it."""
    target = Target(control_plane, file, output, connect_timeout)
    data = {"user_msg": user_msg}
    target.run(_runner(target, "", data, session, timeout, no_wait, quiet, cancel_on_interrupt))


def _runner(
    target: Target,
    service: str,
    data: dict[str, Any],
    session: str | None,
    timeout: float | None,
    no_wait: bool,
    quiet: bool,
    cancel_on_interrupt: bool,
) -> Callable[[AsyncClient], Awaitable[None]]:
    async def main(client: AsyncClient) -> None:
        if session:
            s = await client.get_or_create_session(session)
        else:
            s = await client.create_session()
        handle = await s.create_task(service, timeout=timeout, input=data)
        if no_wait:
            target.emit(
                {"task": handle.name, "session": s.name},
                lambda: out.print(handle.name),
            )
            return
        agent = AgentStream(err)
        try:
            if not quiet:
                await _show_events(handle, service or "orchestrator", agent)
            task = await handle.wait()
        except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this coroutine
            await _interrupted(handle, cancel_on_interrupt)
            raise
        if not quiet:
            agent.finish(task)
        result = task_result(task)  # a failed or cancelled task exits 1 in Target.run
        target.emit(
            task_view(task), lambda: print(json.dumps(result, ensure_ascii=False), flush=True)
        )

    return main


async def _interrupted(handle: TaskHandle, cancel: bool) -> None:
    """Ctrl-C stops watching, not the task (unless --cancel-on-interrupt): say which task
    it was and how to follow or cancel it."""
    name = handle.name
    if cancel:
        await handle.cancel("Ctrl-C in llama-mesh run")
        err.print(f"{name}: cancel requested (`llama-mesh tasks get {name}` shows its state)")
        return
    err.print(
        f"{name} goes on running. Follow it: llama-mesh tasks events {name} --follow\n"
        f"Cancel it: llama-mesh tasks cancel {name}"
    )


async def _show_events(handle: TaskHandle, service: str, agent: AgentStream) -> None:
    """Events on stderr as they come (with a spinner on a terminal); an agent's answer
    as the model writes it, its tool calls and tokens (agent_stream.py)."""
    status = err.status(f"{service}: waiting for a replica", spinner="dots")
    with status if err.is_terminal else contextlib.nullcontext():
        async for event in handle.events():
            if agent.show(event):
                # The answer is written as it comes: no spinner redrawn over it.
                status.stop()
                continue
            err.print(event_line(event))
            status.update(f"{service}: {event.state.lower().replace('_', ' ')}")
            if event.state == "WAITING_FOR_INPUT":
                err.print(
                    f"[yellow]{handle.name} waits for input:[/] llama-mesh answer "
                    f"{handle.name} TEXT"
                )
