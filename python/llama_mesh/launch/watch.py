"""`llama-mesh up --watch`: restart the services whose source changed.

Watches (watchfiles: the OS's file events, no polling) the import root of every service
and the deployment file. A saved Python file restarts the replicas of the services that
run it (launch/sources.py says which); a saved deployment file is read again and the
services whose section changed restart with it (what only a new `up` can apply is
named). Each replica restarts through the supervisor's replace(): the fresh process
starts first, and only once it serves does the old one drain (its running tasks finish,
or are handed back), so nothing in flight is lost; a fresh process that cannot start (a
syntax error: its line is in the error) leaves the old one serving until the file is
fixed and saved again.

    stop = asyncio.Event()
    watching = asyncio.create_task(watch_sources(d, supervisor, respec, announce, stop))
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchfiles import PythonFilter, awatch

from llama_mesh.core.names import AGENTS_SERVICE, ORCHESTRATOR_SERVICE
from llama_mesh.launch.deployment import Deployment, DeploymentError, load_deployment
from llama_mesh.launch.sources import affected, service_sources, watched_roots
from llama_mesh.launch.supervisor import ChildError, ChildSpec, Supervisor

logger = logging.getLogger(__name__)

#: The ChildSpecs of a deployment's services, by child name (`echo/1`).
Respec = Callable[[Deployment], dict[str, ChildSpec]]
#: What `up` says about a restart: (event, fields); fields carry a "message".
Announce = Callable[[str, dict[str, Any]], None]


def file_changes(old: Deployment, new: Deployment) -> tuple[set[str], list[str]]:
    """What a changed deployment file changes: the services to restart, and what only
    a new `up` applies (other sections, services added or removed, replica counts)."""
    services: set[str] = set()
    later: list[str] = []
    models_changed = old.models != new.models
    for name in sorted(old.services.keys() | new.services.keys()):
        before, after = old.services.get(name), new.services.get(name)
        if before is None or after is None:
            later.append(f"services.{name} {'added' if before is None else 'removed'}")
        elif before.replicas != after.replicas:
            later.append(f"services.{name}.replicas")
        elif before != after or (models_changed and after.source is None):
            services.add(name)  # one built from the file (no source) runs its models too
    if models_changed and old.runs_agents_service and new.runs_agents_service:
        services.add(AGENTS_SERVICE)
    if old.orchestrator != new.orchestrator or (models_changed and old.orchestrator.deployed):
        if old.orchestrator.replicas == new.orchestrator.replicas and new.orchestrator.deployed:
            services.add(ORCHESTRATOR_SERVICE)
        else:
            later.append("orchestrator")
    if old.runs_agents_service != new.runs_agents_service:
        later.append("models")
    for key in Deployment.model_fields:
        if key not in {"services", "models", "orchestrator"} and getattr(old, key) != getattr(
            new, key
        ):
            later.append(key)
    return services, later


class SourceWatch:
    """Restarts the replicas of services whose files changed (one batch at a time)."""

    def __init__(
        self, d: Deployment, supervisor: Supervisor, respec: Respec, announce: Announce
    ) -> None:
        assert d.file is not None
        self.file = d.file
        self.base = d.base_dir
        self.running = d  # what `up` runs (its overrides: --log-level)
        self.supervisor = supervisor
        self.respec = respec
        self.announce = announce
        self.sources = service_sources(d)
        self.roots = watched_roots(self.sources, self.file)
        self.as_read = load_deployment(self.file)  # to compare the file with
        self.seen: dict[Path, str | None] = {}  # a changed file's content, by digest
        python = PythonFilter(ignore_paths=(str(d.state_path),))
        self.keep: Callable[[Any, str], bool] = lambda change, path: (
            Path(path) == self.file or python(change, path)
        )

    def _shown(self, path: Path) -> str:
        return str(path.relative_to(self.base)) if path.is_relative_to(self.base) else str(path)

    async def run(self, stop: asyncio.Event, started: asyncio.Event | None = None) -> None:
        """Until `stop` is set. `started` is set once the directories are watched: the
        watch begins in the same step as the first iteration (no await in between)."""
        logger.info("watching %s", ", ".join(map(str, self.roots)))
        if started is not None:
            started.set()
        async for changes in awatch(*self.roots, watch_filter=self.keep, stop_event=stop):
            paths = {Path(path) for _, path in changes}
            await self.changed(paths)

    async def changed(self, paths: set[Path]) -> None:
        """One batch of saved files: restart what they affect."""
        # A file saved again as it was (a second event of one save, `touch`, a
        # checkout) restarts nothing.
        paths = await asyncio.to_thread(self._new_contents, paths)
        restart: dict[str, list[Path]] = {}
        specs: dict[str, ChildSpec] = {}
        if self.file in paths:
            paths.discard(self.file)
            reread = await self._reread()
            if reread is not None:
                services, specs = reread
                restart.update({service: [self.file] for service in services})
        # A fresh process compiles what changed: a cached .pyc of a file saved twice in
        # one second, at the same size, would pass for it.
        await asyncio.to_thread(_forget_bytecode, paths)
        for service, files in affected(self.sources, paths).items():
            restart.setdefault(service, []).extend(files)
        for service, files in restart.items():
            await self.restart(service, files, specs)

    def _new_contents(self, paths: set[Path]) -> set[Path]:
        """The paths whose content differs from when they were last seen (every path
        the first time; a removed file has changed)."""
        out = set()
        for path in paths:
            try:
                digest: str | None = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                digest = None
            if path not in self.seen or self.seen[path] != digest:
                self.seen[path] = digest
                out.add(path)
        return out

    async def _reread(self) -> tuple[set[str], dict[str, ChildSpec]] | None:
        shown = self._shown(self.file)
        try:
            new = await asyncio.to_thread(load_deployment, self.file)
        except DeploymentError as err:
            self.announce(
                "reload_failed",
                {"file": str(self.file), "message": f"{err}\nkeeping what runs; fix {shown}"},
            )
            return None
        services, later = file_changes(self.as_read, new)
        if later:
            self.announce(
                "restart_needed",
                {
                    "file": str(self.file),
                    "fields": later,
                    "message": f"{shown} changed {', '.join(later)}: stop `up` and start it "
                    "again to apply that",
                },
            )
            return None
        self.as_read = new
        # What `up` was told on its command line stays (--log-level).
        running = new.model_copy(update={"logging": self.running.logging})
        self.running = running
        self.sources = service_sources(running)
        return services, self.respec(running)

    async def restart(
        self, service: str, files: list[Path], specs: dict[str, ChildSpec] | None = None
    ) -> None:
        """Replace each replica of `service`, one after the other."""
        why = ", ".join(self._shown(f) for f in files)
        index = 1
        while (child := self.supervisor.child(f"{service}/{index}")) is not None:
            index += 1
            fields = {"service": service, "child": child.name, "file": [str(f) for f in files]}
            try:
                old_pid = await self.supervisor.replace(child, (specs or {}).get(child.name))
            except ChildError as err:
                self.announce(
                    "reload_failed",
                    {
                        **fields,
                        "message": f"{child.name} not restarted ({why} changed): {err}; "
                        + (
                            "the old process still serves"
                            if child.process.returncode is None
                            else "it is stopped"
                        )
                        + f" until {why} is fixed and saved",
                    },
                )
                return
            self.announce(
                "reloaded",
                {
                    **fields,
                    "pid": child.pid,
                    "old_pid": old_pid,
                    "replica_id": child.ready.get("replica_id"),
                    "message": f"{child.name} restarted: {why} changed (pid {child.pid}, "
                    f"was {old_pid})",
                },
            )


def _forget_bytecode(paths: set[Path]) -> None:
    for path in paths:
        with contextlib.suppress(ValueError, OSError):
            Path(importlib.util.cache_from_source(str(path))).unlink(missing_ok=True)
