"""The `llama-mesh` command line: every command, wired into one Typer app.

    llama-mesh up examples/quickstart/deployment.yaml     # everything, on this machine
    llama-mesh run echo --arg arg1=hello                  # "hello_result"
    llama-mesh status -o json                             # services, replicas, recent tasks
    llama-mesh serve control-plane --nats nats://...      # one component, for clusters

Each command group lives in its own module (serve, up, run, status, sessions, tasks,
events); target.py holds what the client commands share (the control plane's address,
output, exit codes), views.py how resources are shown. docs/cli.md describes them all.
"""

from __future__ import annotations

import inspect
import sys
from typing import Annotated

import typer

from llama_mesh.cli import (
    events,
    inbox,
    keys,
    logs,
    run,
    serve,
    sessions,
    starter,
    status,
    tasks,
    up,
)

app = typer.Typer(
    help="llama-mesh: llama-index Workflows as services in a gRPC mesh.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
serve_app = typer.Typer(help="Run one component of a deployment in this process.")
sessions_app = typer.Typer(help="List, create, show and delete sessions.")
tasks_app = typer.Typer(help="List, show and cancel tasks; stream their events.")
keys_app = typer.Typer(help="Issue, list, rotate and revoke API keys (admin).")


def _print_version(value: bool) -> None:
    if value:
        from llama_mesh import __version__

        print(f"llama-mesh {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """llama-mesh: llama-index Workflows as services in a gRPC mesh."""


app.command()(up.up)
app.command()(up.check)
app.command()(up.reset)
app.command()(starter.init)
app.command()(run.run)
app.command()(run.ask)
app.command()(status.status)
app.command()(logs.logs)
app.command("send-event")(events.send_event)
app.command()(inbox.inbox)
app.command()(inbox.answer)

app.add_typer(serve_app, name="serve")
serve_app.command("nats")(serve.serve_nats)
serve_app.command("control-plane")(serve.serve_control_plane)
serve_app.command("service")(serve.serve_service)
serve_app.command("gateway")(serve.serve_gateway)

app.add_typer(sessions_app, name="sessions")
sessions_app.command("list")(sessions.sessions_list)
sessions_app.command("create")(sessions.sessions_create)
sessions_app.command("get")(sessions.sessions_get)
sessions_app.command("delete")(sessions.sessions_delete)

app.add_typer(tasks_app, name="tasks")
tasks_app.command("list")(tasks.tasks_list)
tasks_app.command("get")(tasks.tasks_get)
tasks_app.command("cancel")(tasks.tasks_cancel)
tasks_app.command("events")(events.tasks_events)

app.add_typer(keys_app, name="keys")
keys_app.command("create")(keys.keys_create)
keys_app.command("list")(keys.keys_list)
keys_app.command("rotate")(keys.keys_rotate)
keys_app.command("delete")(keys.keys_delete)


def _summaries(group: typer.Typer) -> None:
    """Each command's line in its group's `--help`: the first paragraph of its docstring
    on one line (in rich markup mode typer keeps the docstring's line breaks there, so
    summaries broke mid-sentence)."""
    for info in group.registered_commands:
        if info.short_help is None and info.callback is not None:
            first = (inspect.getdoc(info.callback) or "").split("\n\n")[0]
            info.short_help = " ".join(first.split())
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _summaries(sub.typer_instance)


_summaries(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
