"""Run one page: every block in order, in one workspace and one shell, against the
deployment the page starts or names. Returns the failures, one per block, each with
what the doc shows and what the program did.

    async with PageRun(parse_page(path, ROOT), ROOT, tmp_path) as run:
        failures = await run.run()
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from docs import transcript
from docs.markdown import Block, Page, Role
from docs.model_fixture import scripted_model
from docs.shell import Background, Shell, ShellError, run_program
from docs.workspace import (
    Addresses,
    DeploymentFile,
    deployment_files,
    make_workspace,
    rewrite_deployment,
)

VENV_BIN = Path(sys.executable).parent
CLI = VENV_BIN / "llama-mesh"
BACKGROUND_TIMEOUT = 120.0
DEFAULT_CONTROL_PLANE_PORT = 50051

# A fixture prepares what a page needs besides a deployment (a model server, say): it
# may add to `run.env` and `run.addresses` before the page's blocks run.
Fixture = Callable[["PageRun"], contextlib.AbstractAsyncContextManager[None]]
FIXTURES: dict[str, Fixture] = {"scripted-model": scripted_model}


class BlockFailed(AssertionError):
    """A block did not do what its page says."""


@dataclass
class Failure:
    block: Block
    message: str

    def __str__(self) -> str:
        return f"{self.block.where} ({self.block.first_line.strip()[:60]}):\n{self.message}"


def shell_env() -> dict[str, str]:
    """A reader's environment: the venv not activated (pages activate it, or say
    `.venv/bin/...`), an 80-column terminal, no llama-mesh settings of the caller's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLAMA_MESH_", "PYTEST_"))
        and k not in ("VIRTUAL_ENV", "PYTHONPATH", "COLUMNS", "LINES")
    }
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != VENV_BIN]
    env["PATH"] = os.pathsep.join(path)
    env["COLUMNS"], env["LINES"] = "80", "24"
    # A terminal shows stdout line by line; a pipe would hold it back behind stderr.
    env["PYTHONUNBUFFERED"] = "1"
    return env


class PageRun:
    def __init__(self, page: Page, root: Path, tmp: Path) -> None:
        self.page = page
        self.root = root
        self.workspace = make_workspace(root, tmp / "workspace")
        self.env = shell_env()
        self.addresses = Addresses()
        self.failures: list[Failure] = []
        self._deployments: dict[Path, tuple[DeploymentFile, str]] = {}
        self._running: dict[Path, dict[str, Any]] = {}  # deployment file -> its run file
        self._exported: set[Path] = set()
        # (job, its block (None: the page's deployment), command, expected output)
        self._background: list[tuple[Background, Block | None, str, str | None]] = []
        self._stack = contextlib.AsyncExitStack()
        self.shell = Shell(self.workspace, self.env)

    async def __aenter__(self) -> PageRun:
        await self._stack.__aenter__()
        await self._stack.enter_async_context(self.shell)
        self._stack.push_async_callback(self._stop_background)
        for name in self.page.fixtures:
            if name not in FIXTURES:
                raise BlockFailed(f"{self.page.path}: no doc-test fixture {name!r}")
            await self._stack.enter_async_context(FIXTURES[name](self))
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.__aexit__(t, e, tb)

    # ------------------------------------------------------------ the page

    async def run(self) -> list[Failure]:
        if self.page.deployment:
            await self._start_deployment(self.page.deployment)
        for block in self.page.blocks:
            try:
                await self._run_block(block)
            except (BlockFailed, ShellError, TimeoutError) as e:
                message = str(e) or f"timed out after {block.timeout:g} s"
                self.failures.append(Failure(block, message))
        return self.failures

    async def _run_block(self, block: Block) -> None:
        if block.role is Role.CONSOLE:
            await self._console(block)
        elif block.role is Role.SHELL:
            await self._shell(block)
        elif block.role is Role.PYTHON:
            await self._python(block)
        elif block.role is Role.DEPLOYMENT:
            await self._check_deployment(block)
        elif block.role is Role.FILE:
            path = self.workspace / block.directives["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.addresses.forward(block.text), encoding="utf-8")
        elif block.role is Role.EXCERPT:
            check_excerpt(block, self.root)
        # OUTPUT blocks are compared with the block before them; FIGURE and SKIP do not run.

    def _compare(self, block: Block, command: str, expected: str, actual: str) -> None:
        if not transcript.matches(expected, actual):
            raise BlockFailed(
                f"$ {command}\n{transcript.diff(expected, actual)}\n"
                f"(the doc's `…` stands for what varies)"
            )

    # ------------------------------------------------------------ blocks

    def _cwd(self, block: Block) -> Path:
        return self.workspace / block.directives.get("in", ".")

    async def _console(self, block: Block) -> None:
        commands = transcript.commands(block.text)
        if "background" in block.directives:
            if len(commands) != 1:
                raise BlockFailed("a background block holds exactly one `$ command`")
            await self._start_background(block, commands[0].text, commands[0].expected)
            return
        errors: list[str] = []
        for command in commands:
            out, _ = await self.shell.run(
                self.addresses.forward(command.text), timeout=block.timeout
            )
            actual = self.addresses.backward(out)
            if not transcript.matches(command.expected, actual):
                errors.append(f"$ {command.text}\n{transcript.diff(command.expected, actual)}")
        if errors:
            raise BlockFailed("\n".join(errors) + "\n(the doc's `…` stands for what varies)")

    async def _shell(self, block: Block) -> None:
        lines = logical_lines(block.text)
        if "background" in block.directives:
            if len(lines) != 1:
                raise BlockFailed("a background block holds exactly one command")
            expected = block.output.text if block.output else None
            await self._start_background(block, lines[0], expected)
            return
        outputs: list[str] = []
        for line in lines:
            out, code = await self.shell.run(self.addresses.forward(line), timeout=block.timeout)
            outputs.append(out)
            if code != 0:
                raise BlockFailed(f"$ {line}\nexited {code}:\n{self.addresses.backward(out)}")
        if block.output is not None:
            actual = self.addresses.backward("\n".join(o for o in outputs if o))
            self._compare(block, " ; ".join(lines), block.output.text, actual)

    async def _python(self, block: Block) -> None:
        """The block as a program of its own (`python FILE` in the shell's directory,
        or `in:`), so that one that hangs is stopped without the page's shell."""
        cwd, env = await self._shell_state()
        if "in" in block.directives:
            cwd = self._cwd(block)
        script = cwd / f"_doc_test_{Path(block.page).stem}_{block.line}.py"
        script.write_text(self.addresses.forward(block.text), encoding="utf-8")
        try:
            out, code = await run_program([sys.executable, script.name], cwd, env, block.timeout)
        finally:
            script.unlink()
        actual = self.addresses.backward(out)
        if code != 0:
            raise BlockFailed(f"the program exited {code}:\n{actual}")
        if block.output is not None:
            self._compare(block, "python", block.output.text, actual)

    async def _check_deployment(self, block: Block) -> None:
        path = self._cwd(block) / f"_doc_test_{block.line}.yaml"
        path.write_text(block.text, encoding="utf-8")
        try:
            command = f"{CLI} check {shlex.quote(str(path))}"
            out, code = await self.shell.run(command, timeout=block.timeout)
        finally:
            path.unlink()
        if code != 0:
            raise BlockFailed(f"llama-mesh check says it is not a valid deployment:\n{out}")

    # ------------------------------------------------------------ servers

    def _prepare_deployments(self) -> None:
        """Move every deployment file the workspace holds now onto free ports."""
        for path in deployment_files(self.workspace):
            text = path.read_text(encoding="utf-8")
            known = self._deployments.get(path)
            if known is not None and known[1] == text:
                continue
            rewritten = rewrite_deployment(path)
            if rewritten is not None:
                self._deployments[path] = (rewritten, path.read_text(encoding="utf-8"))

    def _discover(self) -> None:
        """Map the addresses of every deployment whose `up` has written its run file
        (it does before it prints that it is ready)."""
        for path, (deployment, _) in self._deployments.items():
            if path in self._running:
                continue
            try:
                summary = json.loads(deployment.run_file().read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            self._running[path] = summary
            real = str(summary["control_plane"])
            self.addresses.add(deployment.doc_control_plane, int(real.rsplit(":", 1)[1]))
            if deployment.doc_gateway and deployment.gateway:
                self.addresses.add(deployment.doc_gateway, deployment.gateway)
            for doc_port, real_port in deployment.moved.items():
                self.addresses.add(doc_port, real_port)

    async def _learn_addresses(self) -> None:
        self._discover()
        for path, summary in self._running.items():
            if path in self._exported:
                continue
            self._exported.add(path)
            if self._deployments[path][0].doc_control_plane == DEFAULT_CONTROL_PLANE_PORT:
                # The CLI's default address is the documented one; here it is this one.
                real = str(summary["control_plane"])
                self.env["LLAMA_MESH_CONTROL_PLANE"] = real
                await self.shell.run(f"export LLAMA_MESH_CONTROL_PLANE={real}", timeout=10)

    async def _start_background(self, block: Block, command: str, expected: str | None) -> None:
        """Start a command that keeps running (a server, a stream) in the shell's current
        directory and environment; return once it is ready: once its output begins with
        what the doc shows, or, with `ready: TEXT`, once TEXT appears (its whole output
        is then compared when it has ended, or been stopped with the page)."""
        ready_text = block.directives.get("ready")
        if expected is None and ready_text is None:
            raise BlockFailed("a background block shows its output or says `ready: TEXT`")
        self._prepare_deployments()
        cwd, env = await self._shell_state()
        job = Background(self.addresses.forward(command), cwd, env)
        await job.start()
        self._background.append((job, block, command, expected))

        def ready(output: str) -> bool:
            self._discover()
            mapped = self.addresses.backward(output)
            if ready_text is not None:
                return ready_text in mapped
            assert expected is not None
            return transcript.starts_with(expected, mapped)

        timeout = float(block.directives.get("timeout", BACKGROUND_TIMEOUT))
        try:
            up = await job.until(ready, timeout)
        except TimeoutError:
            up = False
        await self._learn_addresses()
        if not up:
            shown = expected if expected is not None else f"a line with {ready_text!r}"
            raise BlockFailed(
                f"$ {command}\nnot ready within {timeout:g} s"
                f"{' (it exited)' if job.exited else ''}:\n"
                + transcript.diff(shown, self.addresses.backward(job.output))
            )

    async def _shell_state(self) -> tuple[Path, dict[str, str]]:
        """The shell's working directory and variables (it exports every assignment)."""
        out, _ = await self.shell.run("pwd; env -0", timeout=10)
        cwd, _, environ = out.partition("\n")
        env = dict(item.split("=", 1) for item in environ.split("\0") if "=" in item)
        return Path(cwd), env

    async def _start_deployment(self, file: str) -> None:
        self._prepare_deployments()
        path = (self.workspace / file).resolve()
        if path not in self._deployments:
            raise BlockFailed(f"{self.page.path}: `deployment: {file}` is not a deployment file")
        job = Background(f"{CLI} up {shlex.quote(file)} -o json", self.workspace, self.env)
        await job.start()
        self._background.append((job, None, "", None))
        if not await job.until(lambda out: '"ready": true' in out, BACKGROUND_TIMEOUT):
            raise BlockFailed(f"llama-mesh up {file} exited before ready:\n{job.output}")
        await self._learn_addresses()

    async def _stop_background(self) -> None:
        """Ctrl-C what still runs, newest first; compare the output of the blocks that
        said `ready:`; a deployment must leave no process behind."""
        for job, block, command, expected in reversed(self._background):
            try:
                await job.stop()
            except ShellError as e:
                self.failures.append(Failure(block or self.page.blocks[0], str(e)))
                continue
            if block is None or expected is None or "ready" not in block.directives:
                continue
            actual = self.addresses.backward(job.output)
            if not transcript.starts_with(expected, actual):
                message = f"$ {command}\n{transcript.diff(expected, actual)}"
                self.failures.append(Failure(block, message))
        for path, summary in self._running.items():
            left = [int(pid) for pid in summary.get("pids", {}).values() if _alive(int(pid))]
            if left:
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.failures.append(
                    Failure(self.page.blocks[0], f"`up` of {path.name} left processes: {left}")
                )


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def logical_lines(text: str) -> list[str]:
    """A shell block's commands: one a line, `\\` continuing; comments and blank lines out."""
    lines: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current.append(line)
        if not line.endswith("\\"):
            lines.append("\n".join(current))
            current = []
    if current:
        lines.append("\n".join(current))
    return lines


def check_excerpt(block: Block, root: Path) -> None:
    """The block's lines appear in the file, in order, indentation aside; a line that
    is only `…` (or a comment starting with `…`) marks a gap; a first line `# PATH`
    names the file."""
    path = root / block.directives["excerpt"]
    if not path.is_file():
        raise BlockFailed(f"excerpt: {block.directives['excerpt']} is not a file")
    # Indentation aside: a doc may show a method without its class, or Go with spaces.
    source = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line.strip() for line in block.text.splitlines()]
    if lines and lines[0].lstrip("#/ ") == block.directives["excerpt"]:
        lines = lines[1:]
    chunks: list[list[str]] = [[]]
    for line in lines:
        if line.lstrip("#/ ").startswith(transcript.ELLIPSIS):
            chunks.append([])
        else:
            chunks[-1].append(line)
    position = 0
    for chunk in chunks:
        while chunk and not chunk[0]:
            chunk.pop(0)
        while chunk and not chunk[-1]:
            chunk.pop()
        if not chunk:
            continue
        found = _find(source, chunk, position)
        if found < 0:
            raise BlockFailed(
                f"these lines are not in {block.directives['excerpt']} "
                f"(after line {position}):\n" + "\n".join(chunk)
            )
        position = found + len(chunk)


def _find(source: list[str], chunk: list[str], start: int) -> int:
    for i in range(start, len(source) - len(chunk) + 1):
        if source[i : i + len(chunk)] == chunk:
            return i
    return -1
