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

# Typer (>= 0.29) carries a Click of its own; its errors have no public names.
from typer._click import exceptions as click_errors
from typer.core import TyperGroup

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
from llama_mesh.cli.target import EXIT_USAGE, error

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
    """Run the command named on the command line. A usage error (an unknown option, a
    value that does not parse, a missing argument) is one `error:` line, as every other
    error is (Click printed the usage and the error in a box: five lines)."""
    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError:
        sys.exit(EXIT_USAGE)  # the help is printed already
    except click_errors.UsageError as e:
        error(usage_error(e))
        sys.exit(e.exit_code)
    except click_errors.ClickException as e:
        error(" ".join(e.format_message().split()))
        sys.exit(e.exit_code)
    except typer.Abort:
        error("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    # A command that returns ends well; one that exits (typer.Exit) returns its code.
    sys.exit(code if type(code) is int else 0)


def usage_error(e: click_errors.UsageError) -> str:
    """A usage error on one line: the command, what is wrong, where the options are
    listed; for `run`, where a task's input goes (`--user-msg` is no option of it)."""
    message = " ".join(e.format_message().split()).rstrip(".")
    ctx = e.ctx
    if ctx is None:
        return message
    listed = "commands" if isinstance(ctx.command, TyperGroup) else "options"
    hint = f"`{ctx.command_path} --help` lists its {listed}"
    if (
        isinstance(e, click_errors.NoSuchOption)
        and ctx.command.name == "run"
        and e.option_name.startswith("--")
    ):
        key = e.option_name.removeprefix("--").replace("-", "_")
        hint = f"the task's input goes in --arg KEY=VALUE (--arg {key}=…) or --input JSON; {hint}"
    return f"{ctx.command_path}: {message}; {hint}"


if __name__ == "__main__":
    main()
