"""Which files each service of a deployment runs, for `llama-mesh up --watch`.

A service's source is the file of each module its references name (`source`, `tools`,
the orchestrator's `source`), found under its import root (`path`, by default the
deployment file's directory) without importing anything. A service built from the file
alone (`kind: human`, an agent with a `model`, the built-in agent service) has its
section of the file as its source.

    sources = service_sources(deployment)
    affected(sources, {Path("/app/workflows.py")})   # {"echo": [Path("/app/workflows.py")]}

A changed Python file that is no service's own module but lies under a service's import
root (a helper it may import) affects every service that loads code from that root.
"""

from __future__ import annotations

import importlib.machinery
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from llama_mesh.core.names import AGENTS_SERVICE, ORCHESTRATOR_SERVICE
from llama_mesh.launch.deployment import Deployment


@dataclass(frozen=True)
class ServiceSource:
    """What one service runs: the files of its modules, and where it imports from."""

    service: str
    root: Path | None
    files: frozenset[Path] = field(default_factory=frozenset)


def module_file(module: str, root: Path) -> Path | None:
    """The file `module` (dotted) is imported from when `root` comes first on the import
    path: its `.py`, or its package's `__init__.py`; None if it is not under `root`."""
    search: list[str] | None = [str(root)]
    spec = None
    parts = module.split(".")
    for i in range(len(parts)):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    if spec is None or not spec.has_location or spec.origin is None:
        return None
    found = Path(spec.origin).resolve()
    return found if found.is_relative_to(root.resolve()) else None


def _files(references: Iterable[str], root: Path) -> frozenset[Path]:
    modules = {reference.partition(":")[0] for reference in references}
    return frozenset(f for m in modules if (f := module_file(m, root)) is not None)


def service_sources(d: Deployment) -> dict[str, ServiceSource]:
    """Every service `up` runs, by id, with the files it loads."""
    out: dict[str, ServiceSource] = {}
    for name, spec in d.services.items():
        references = [*([spec.source] if spec.source else []), *spec.tools]
        root = d.service_path(spec).resolve()
        out[name] = ServiceSource(name, root if references else None, _files(references, root))
    if d.runs_agents_service:
        out[AGENTS_SERVICE] = ServiceSource(AGENTS_SERVICE, None)
    orchestrator = d.orchestrator
    if orchestrator.deployed:
        root = (d.resolve(orchestrator.path) if orchestrator.path else d.base_dir).resolve()
        references = [orchestrator.source] if orchestrator.source else []
        out[ORCHESTRATOR_SERVICE] = ServiceSource(
            ORCHESTRATOR_SERVICE, root if references else None, _files(references, root)
        )
    return out


def watched_roots(sources: dict[str, ServiceSource], deployment_file: Path) -> list[Path]:
    """The directories to watch: every import root, and the deployment file's; none
    inside another (a watch is recursive)."""
    roots = sorted(
        {deployment_file.resolve().parent}
        | {s.root for s in sources.values() if s.root is not None}
    )
    return [r for r in roots if not any(r != o and r.is_relative_to(o) for o in roots)]


def affected(sources: dict[str, ServiceSource], changed: Iterable[Path]) -> dict[str, list[Path]]:
    """The services to restart for these changed Python files, each with the files that
    made it; a file that is some service's own module restarts only those services."""
    out: dict[str, list[Path]] = {}
    for path in sorted({p.resolve() for p in changed}):
        owners = [s.service for s in sources.values() if path in s.files]
        if not owners:
            owners = [
                s.service
                for s in sources.values()
                if s.root is not None and path.is_relative_to(s.root)
            ]
        for service in owners:
            out.setdefault(service, []).append(path)
    return out
