"""`llama-mesh init NAME`: a runnable starter, the workflow of docs/tutorial.md.

llama-mesh init hello     # hello/hello.py, hello/deployment.yaml, hello/test_hello.py
cd hello && llama-mesh check && llama-mesh up
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from llama_mesh.cli.target import EXIT_USAGE, error, out

# A service id (deployment.md) that is also a Python module name.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")

WORKFLOW = '''\
"""The {name} service: a llama-index Workflow, nothing mesh-specific."""

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent


class Greeted(Event):
    name: str
    times: int


class Greeter(Workflow):
    @step
    async def greet(self, ctx: Context, ev: StartEvent) -> StopEvent:
        name = ev.get("name")
        if not name:
            raise ValueError("a name is required: --arg name=Ada")
        # The Context is kept per session: runs in one session count on.
        times = await ctx.store.get("times", default=0) + 1
        await ctx.store.set("times", times)
        ctx.write_event_to_stream(Greeted(name=name, times=times))
        return StopEvent(result={{"greeting": f"Hello, {{name}}!", "times": times}})


workflow = Greeter(timeout=60)
'''

DEPLOYMENT = """\
# `llama-mesh up` in this directory runs it; every field: docs/deployment.md.
name: {name}

control_plane:
  port: 50051

gateway:
  port: 8080

services:
  {name}:
    source: {name}:workflow
"""

TEST = '''\
"""`pytest test_{name}.py`: the workflow on a mesh in this process."""

import pytest

from llama_mesh import LocalMesh, TaskFailedError

from {name} import Greeter


@pytest.mark.asyncio
async def test_a_session_counts_its_greetings() -> None:
    async with LocalMesh({{"{name}": Greeter()}}) as mesh:
        session = await mesh.client.create_session()
        await session.run("{name}", name="Ada")
        assert await session.run("{name}", name="Ada") == {{
            "greeting": "Hello, Ada!",
            "times": 2,
        }}
        with pytest.raises(TaskFailedError, match="a name is required"):
            await session.run("{name}")
'''


def init(
    name: Annotated[str, typer.Argument(help="The service, its module and its directory.")],
) -> None:
    """Write a runnable starter: NAME/NAME.py (a workflow), NAME/deployment.yaml and
    NAME/test_NAME.py."""
    if not _NAME.fullmatch(name):
        error(f"{name!r} is not a name for a service and a module: a-z, 0-9 and _, a letter first")
        raise typer.Exit(EXIT_USAGE)
    directory = Path(name)
    files = {
        directory / f"{name}.py": WORKFLOW.format(name=name),
        directory / "deployment.yaml": DEPLOYMENT.format(name=name),
        directory / f"test_{name}.py": TEST.format(name=name),
    }
    there = [str(p) for p in files if p.exists()]
    if there:
        error(f"not overwriting {', '.join(there)}")
        raise typer.Exit(EXIT_USAGE)
    directory.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        out.print(f"wrote {path}")
    out.print(
        f"next: cd {name} && llama-mesh check && llama-mesh up   "
        f"(then, in another terminal there: llama-mesh run {name} --arg name=Ada)"
    )
