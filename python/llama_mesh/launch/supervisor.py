"""Child processes of `llama-mesh up`: started in stages, ready when they say so,
restarted when they die (at a bounded rate), stopped in reverse order.

Each child is a `llama-mesh serve ...` command that prints one JSON line
``{"ready": true, ...}`` on stdout once it serves (its pipes: child_pipes.py); nothing
waits on a timer. Children run in their own session (a Ctrl-C in the terminal reaches
only the supervisor, which then stops them in order) and get a pipe on stdin that they
watch: if the supervisor dies without stopping them, the pipe closes and they exit too.
A child with its own way to start (``ChildSpec.start``: nats-server, which says it is
ready on stderr) is a direct child all the same, so its death is seen at once.

A child that dies is restarted unless it was restarted ``max_restarts`` times within
the last ``window`` seconds (RestartConfig): a rate, not a count over the whole life
of the deployment.

    supervisor = Supervisor(report=print)
    try:
        [nats] = await supervisor.start_stage([ChildSpec("nats", [...])])
        print(nats.ready["url"])
    finally:
        await supervisor.stop()

A child ends with ``await until_signalled(watch_stdin=True)`` (launch/signals.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from llama_mesh.config.restarts import RestartConfig
from llama_mesh.core.tasks import cancel_and_wait
from llama_mesh.launch.child_pipes import (
    LINE_LIMIT,
    discard,
    drained,
    kill,
    pass_lines,
    read_ready_line,
)

logger = logging.getLogger(__name__)

Report = Callable[[str, "Child", dict[str, Any]], None]


class ChildError(RuntimeError):
    """A child process exited, or did not say it was ready in time."""


class Started(NamedTuple):
    """A child process that said it is ready, and the task reading its output."""

    process: asyncio.subprocess.Process
    ready: dict[str, Any]
    output: asyncio.Task[None] | None


# Starts a child its own way; given the first run's ready line on a restart.
Starter = Callable[[dict[str, Any] | None], Awaitable[Started]]


@dataclass
class ChildSpec:
    """How to run one child.

    ``restart_argv`` gives the command for a restart from the first ready line, e.g. to
    bind the same port the first run chose. ``start``, if given, starts the child
    instead of ``argv`` (and restarts it, given the first ready line). A ``critical``
    child that cannot be kept running stops the whole deployment. A ``stop_first``
    child stops before the others of its stage (the gateway before the services it
    fronts). ``on_exit`` runs after the child died, before it is restarted (e.g. to
    deregister a dead replica). ``overlap``: replace() may start its fresh process
    before the old one stops (not with a fixed port); ``quiesce``, if given, makes the
    old one take no new work before replace() returns (a replica pauses).
    """

    name: str
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    critical: bool = False
    stop_timeout: float = 15.0
    restart_argv: Callable[[dict[str, Any]], list[str]] | None = None
    stop_first: bool = False
    start: Starter | None = None
    on_exit: Callable[[Child], Awaitable[None]] | None = None
    overlap: bool = True
    quiesce: Callable[[Child], Awaitable[None]] | None = None


@dataclass
class Child:
    """A running child: its process and what its ready line said."""

    spec: ChildSpec
    process: asyncio.subprocess.Process
    ready: dict[str, Any]
    restarts: int = 0
    # When it was restarted, within the restart window.
    restart_times: deque[float] = field(default_factory=deque, repr=False)
    _stdout: asyncio.Task[None] | None = field(default=None, repr=False)
    _stderr: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Starts children stage by stage, watches them, and stops them last-stage-first."""

    def __init__(
        self,
        *,
        report: Report | None = None,
        restarts: RestartConfig | None = None,
        ready_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_stderr: Callable[[str, bytes], None] | None = None,
    ) -> None:
        """`on_stderr(child_name, line)` gets each line the children write on stderr
        (without it, their stderr is the supervisor's)."""
        self._report = report or (lambda kind, child, fields: None)
        self.restarts = restarts or RestartConfig()
        self._clock = clock  # for the restart window
        self.on_stderr = on_stderr
        self.ready_timeout = ready_timeout
        self.stages: list[list[Child]] = []
        self._watchers: dict[str, asyncio.Task[None]] = {}  # by child name
        # Stopping the old processes of replaced children (they drain): replace().
        self._retiring: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.failed = asyncio.Event()
        self.failure = ""

    async def start_stage(self, specs: list[ChildSpec]) -> list[Child]:
        """Start the children of one stage together; return once all are ready.

        If one fails, the others of the stage are stopped and ChildError is raised (the
        stages before stay up; the caller's `stop()` ends them).
        """
        launches = [asyncio.create_task(self._launch(spec, spec.argv, None)) for spec in specs]
        try:
            results = await asyncio.gather(*launches, return_exceptions=True)
        except asyncio.CancelledError:
            # Stopped while starting: the children that came up must not be left behind.
            results = await asyncio.gather(*launches, return_exceptions=True)
            started = [r for r in results if isinstance(r, Child)]
            await asyncio.gather(*(self._terminate(child) for child in started))
            raise
        started = [r for r in results if isinstance(r, Child)]
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await asyncio.gather(*(self._terminate(child) for child in started))
            for err in errors:
                if not isinstance(err, ChildError):
                    raise err
            raise ChildError("; ".join(str(err) for err in errors))
        self.stages.append(started)
        for child in started:
            self._watch_child(child)
        return started

    def _watch_child(self, child: Child) -> None:
        self._watchers[child.name] = asyncio.create_task(
            self._watch(child), name=f"watch-{child.name}"
        )

    def child(self, name: str) -> Child | None:
        """The running child of that name (`echo/2`), if any."""
        return next((c for stage in self.stages for c in stage if c.name == name), None)

    async def replace(self, child: Child, spec: ChildSpec | None = None) -> int:
        """Run `child` again, from `spec` if given (its ChildSpec may have changed);
        return the pid of the process it replaced once the fresh one is ready.

        The fresh process starts first; once it is ready the old one is told to stop
        (a replica drains: its running tasks finish, or are handed back after its
        drain timeout; stop() waits for it). A fresh process that cannot start
        (ChildError) leaves the old one serving. A spec with ``overlap=False`` (a fixed
        port) has the old process stopped first instead: the child stays down if the
        fresh one cannot start.
        """
        spec = spec or child.spec
        watcher = self._watchers.pop(child.name, None)
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        old = Child(child.spec, child.process, child.ready, _stdout=child._stdout)
        old._stderr = child._stderr
        if not spec.overlap:
            await self._terminate(old)
        try:
            fresh = await self._launch(spec, spec.argv, None)
        except ChildError:
            if spec.overlap:
                self._watch_child(child)  # the old process still serves
            raise
        child.spec, child.process, child.ready = spec, fresh.process, fresh.ready
        child._stdout, child._stderr = fresh._stdout, fresh._stderr
        self._watch_child(child)
        if old.process.returncode is None:
            if old.spec.quiesce is not None:
                try:
                    await old.spec.quiesce(old)
                except Exception as err:  # it stops all the same, a moment later
                    logger.warning("%s (pid %d) did not pause: %r", old.name, old.pid, err)
            # Told now, not when the task below first runs: once this returns, the old
            # process is on its way out.
            with contextlib.suppress(ProcessLookupError):
                old.process.terminate()
            retiring = asyncio.create_task(self._retire(old), name=f"retire-{old.pid}")
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)
        return old.pid

    async def _retire(self, old: Child) -> None:
        await self._terminate(old, told=True)
        if old.spec.on_exit is not None:
            try:
                await old.spec.on_exit(old)
            except Exception as err:  # the replica may have left the registry itself
                logger.warning("%s: after its old process stopped: %r", old.name, err)

    async def _launch(
        self, spec: ChildSpec, argv: list[str], first_ready: dict[str, Any] | None
    ) -> Child:
        if spec.start is not None:
            try:
                async with asyncio.timeout(self.ready_timeout):
                    started = await spec.start(first_ready)
            except TimeoutError:
                raise ChildError(
                    f"{spec.name} did not say it was ready within {self.ready_timeout:g}s"
                ) from None
            except (OSError, RuntimeError) as err:
                raise ChildError(f"{spec.name} did not start: {err}") from err
            logger.info("%s ready (pid %d): %s", spec.name, started.process.pid, started.ready)
            child = Child(spec=spec, process=started.process, ready=started.ready)
            child._stdout = started.output
            return child
        ready: dict[str, Any] | None
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None if self.on_stderr is None else asyncio.subprocess.PIPE,
            env=spec.env,
            start_new_session=True,
            limit=LINE_LIMIT,
        )
        assert process.stdout is not None
        # Read from the start: a child that logs before it is ready must not block.
        stderr = (
            None
            if self.on_stderr is None or process.stderr is None
            else asyncio.create_task(pass_lines(process.stderr, spec.name, self.on_stderr))
        )
        try:
            async with asyncio.timeout(self.ready_timeout):
                ready = await read_ready_line(process.stdout)
                if ready is None:
                    code = await process.wait()
                    raise ChildError(f"{spec.name} exited with code {code} before it was ready")
        except TimeoutError:
            await kill(process, stderr)
            raise ChildError(
                f"{spec.name} did not say it was ready within {self.ready_timeout:g}s"
            ) from None
        except BaseException:
            await kill(process, stderr)
            raise
        child = Child(spec=spec, process=process, ready=ready, _stderr=stderr)
        child._stdout = asyncio.create_task(discard(process.stdout, spec.name))
        logger.info("%s ready (pid %d): %s", spec.name, process.pid, ready)
        return child

    async def _watch(self, child: Child) -> None:
        while True:
            code = await child.process.wait()
            if child._stdout is not None:
                await child._stdout
            await drained(child._stderr)
            if self._stopping:
                return
            self._report("exited", child, {"code": code})
            if child.spec.on_exit is not None:
                try:
                    await child.spec.on_exit(child)
                except Exception as err:  # a clean-up that failed must not stop restarts
                    logger.warning("%s: after its exit: %r", child.name, err)
            first_ready = child.ready
            limit = self.restarts
            while True:
                now = self._clock()
                while child.restart_times and child.restart_times[0] <= now - limit.window:
                    child.restart_times.popleft()
                if len(child.restart_times) >= limit.max_restarts:
                    recent = len(child.restart_times)
                    self._report("gave_up", child, {"restarts": recent, "window": limit.window})
                    if child.spec.critical and not self.failed.is_set():
                        self.failure = (
                            f"{child.name} exited after {recent} restart(s) within "
                            f"{limit.window:g}s"
                        )
                        self.failed.set()
                    return
                child.restarts += 1
                child.restart_times.append(now)
                argv = child.spec.argv
                if child.spec.restart_argv is not None:
                    argv = child.spec.restart_argv(first_ready)
                try:
                    fresh = await self._launch(child.spec, argv, first_ready)
                except ChildError as err:
                    self._report("restart_failed", child, {"error": str(err)})
                    continue
                child.process, child.ready, child._stdout, child._stderr = (
                    fresh.process,
                    fresh.ready,
                    fresh._stdout,
                    fresh._stderr,
                )
                self._report(
                    "restarted",
                    child,
                    {"restarts": len(child.restart_times), "window": limit.window},
                )
                break

    async def stop(self) -> None:
        """Stop every child, the last stage first; each stage's children together."""
        self._stopping = True
        for watcher in self._watchers.values():
            watcher.cancel()
        await asyncio.gather(*self._watchers.values(), return_exceptions=True)
        self._watchers.clear()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for stage in reversed(self.stages):
            for first in (True, False):
                await asyncio.gather(
                    *(self._terminate(c) for c in stage if c.spec.stop_first is first)
                )

    async def _terminate(self, child: Child, *, told: bool = False) -> None:
        """Stop a child (SIGTERM unless `told` already), killing it after its
        stop_timeout."""
        process = child.process
        if process.returncode is None:
            if not told:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
            try:
                async with asyncio.timeout(child.spec.stop_timeout):
                    await process.wait()
            except TimeoutError:
                logger.warning("%s (pid %d) did not stop; killing it", child.name, process.pid)
                await kill(process)
        if child._stdout is not None:
            await cancel_and_wait(child._stdout)
        await drained(child._stderr)
        if process.stdin is not None:
            process.stdin.close()
        logger.info("%s (pid %d) stopped with code %s", child.name, process.pid, process.returncode)
