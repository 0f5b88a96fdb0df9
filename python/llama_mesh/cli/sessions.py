"""`llama-mesh sessions list | create | get | delete`.

llama-mesh sessions create demo --label team=docs
"""

from __future__ import annotations

from typing import Annotated

import typer

from llama_mesh.cli.agent_stream import usage_line
from llama_mesh.cli.target import (
    EXIT_ERROR,
    EXIT_USAGE,
    ConnectTimeout,
    ControlPlaneOption,
    FileOption,
    Output,
    OutputOption,
    Target,
    out,
    parse_input,
    print_table,
)
from llama_mesh.cli.views import session_view, task_view, tasks_table
from llama_mesh.client import AsyncClient
from llama_mesh.core.errors import AlreadyExistsError


def sessions_list(
    limit: Annotated[
        int, typer.Option(help="At most this many (in the order they last changed, oldest first).")
    ] = 50,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """List sessions."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        # One page of `limit`: not every session of the mesh to show a few.
        sessions = [session_view(s) for s in await client.list_sessions(limit=limit)]

        def text() -> None:
            for s in sessions:
                out.print(f"{s['name']}  {s['create_time'] or ''}")

        target.emit(sessions, text)

    target.run(main)


def sessions_create(
    session_id: Annotated[str | None, typer.Argument(help="Id (default: a new one).")] = None,
    label: Annotated[list[str] | None, typer.Option(help="KEY=VALUE label (repeat).")] = None,
    token_budget: Annotated[
        int, typer.Option(help="Tokens its tasks' LLM calls may use in all; 0: no limit.")
    ] = 0,
    allow_existing: Annotated[
        bool, typer.Option(help="A session SESSION_ID that exists is fine: show it.")
    ] = False,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Create a session (ALREADY_EXISTS if SESSION_ID is taken, unless --allow-existing)."""
    target = Target(control_plane, file, output, connect_timeout)
    labels = {k: str(v) for k, v in parse_input(target, None, label or [], "--label").items()}
    if allow_existing and session_id is None:
        target.fail(EXIT_USAGE, "InvalidArgumentError", "--allow-existing needs a SESSION_ID")

    async def main(client: AsyncClient) -> None:
        if allow_existing:
            assert session_id is not None
            session = await client.get_or_create_session(
                session_id, labels=labels, token_budget=token_budget
            )
        else:
            try:
                session = await client.create_session(
                    session_id, labels=labels, token_budget=token_budget
                )
            except AlreadyExistsError as e:
                # The server's advice names the API's field; the CLI's is the option. (A
                # session of another namespace is only "taken": no advice, none added.)
                message = e.message.replace(
                    "set allow_existing to get it", "--allow-existing shows it"
                )
                target.fail(EXIT_ERROR, "AlreadyExistsError", message, grpc_code=e.code.name)
        target.emit(session_view(session.session), lambda: out.print(session.name))

    target.run(main)


def sessions_get(
    session: Annotated[str, typer.Argument(help="Session id or name.")],
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Show a session and its tasks."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        found = await client.get_session(session)
        tasks = [task_view(t) for t in await found.list_tasks()]
        data = {**session_view(found.session), "tasks": tasks}

        def text() -> None:
            confined = f"  namespace {data['namespace']}" if data["namespace"] else ""
            out.print(
                f"{data['name']}  created {data['create_time']}  labels {data['labels']}{confined}"
            )
            budget = found.session.token_budget
            out.print(
                f"{usage_line(found.session.usage)}"
                + (f" of a budget of {budget}" if budget else ""),
                highlight=False,
            )
            print_table(tasks_table(tasks, "tasks", wide=target.wide), wide=target.wide)

        target.emit(data, text)

    target.run(main)


def sessions_delete(
    session: Annotated[str, typer.Argument(help="Session id or name.")],
    force: Annotated[bool, typer.Option(help="Also cancel its running tasks.")] = False,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Delete a session."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        await client.delete_session(session, force=force)
        target.emit({"deleted": session}, lambda: out.print(f"deleted {session}"))

    target.run(main)
