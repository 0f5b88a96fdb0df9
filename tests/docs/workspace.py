"""Where a page runs: a directory that looks like the repository, its deployment files
moved to free ports, and the map between the addresses the docs print and the real ones.

The workspace links every top-level entry of the repository (`.venv`, `python`,
`clients`, ...) except `examples/`, which is copied, so that what a page starts writes its
state (`.llama-mesh/`) into the copy and every page starts from a clean one.

The docs say `127.0.0.1:50051` and `localhost:8080`; tests never use fixed ports. Before
a page starts a deployment, its file is rewritten: the control plane on port 0 (the
real address is read from the run file `up` writes), the gateway and the metrics ports
on free ports with as many digits as the documented ones (so tables keep their widths),
any other fixed port free. `Addresses` then maps the documented addresses to the real
ones in commands and code, and back in output.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

COPIED = {"examples"}
NOT_LINKED = {".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
HOSTS = ("127.0.0.1", "localhost")


def make_workspace(root: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns(".llama-mesh", "__pycache__")
    for entry in sorted(root.iterdir()):
        if entry.name in NOT_LINKED:
            continue
        if entry.name in COPIED:
            shutil.copytree(entry, dest / entry.name, ignore=ignore, symlinks=True)
        else:
            (dest / entry.name).symlink_to(entry)
    return dest


class Addresses:
    """Documented address <-> real address, for every host spelling of each."""

    def __init__(self) -> None:
        self.ports: dict[int, int] = {}

    def add(self, doc_port: int, real_port: int) -> None:
        if doc_port != real_port:
            self.ports[doc_port] = real_port

    def _sub(self, text: str, mapping: dict[int, int]) -> str:
        for old, new in mapping.items():
            for host in HOSTS:
                text = re.sub(rf"(?<![\w.]){re.escape(host)}:{old}(?!\d)", f"{host}:{new}", text)
        return text

    def forward(self, text: str) -> str:
        """Documented -> real (commands, code)."""
        return self._sub(text, self.ports)

    def backward(self, text: str) -> str:
        """Real -> documented (output)."""
        return self._sub(text, {new: old for old, new in self.ports.items()})


def free_port(digits: int) -> int:
    """A free port with `digits` digits; 4-digit ones lie below the ephemeral range, so
    no port-0 bind elsewhere can take it between this check and its use."""
    low, high = (1024, 9999) if digits <= 4 else (10000, 32767)
    low = max(low, 10 ** (digits - 1))
    for _ in range(200):
        port = random.randrange(low, high + 1)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free {digits}-digit port found")


@dataclass
class DeploymentFile:
    """A deployment file of the workspace, rewritten onto free ports."""

    path: Path
    doc_control_plane: int  # the port the doc's version of the file gives
    doc_gateway: int | None
    gateway: int | None  # the free port it now has
    # Other fixed ports the file gives (metrics ports): documented -> the free one now.
    moved: dict[int, int] = field(default_factory=dict)

    def run_file(self) -> Path:
        from llama_mesh.launch.deployment import load_deployment

        return load_deployment(self.path).run_file


def _replace_scalar(text: str, node: yaml.Node, value: str) -> str:
    start, end = node.start_mark.index, node.end_mark.index
    return text[:start] + value + text[end:]


def _mapping(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            found: yaml.Node = v
            return found
    return None


def rewrite_deployment(path: Path) -> DeploymentFile | None:
    """Move a deployment file's fixed ports to free ones (None if it is not one).

    Values are replaced where they stand, so the file keeps its comments and layout;
    a section the file leaves out (the defaults 50051, 8080) is added at the end.
    """
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict) or "name" not in data or "services" not in data:
        return None
    # (node, new value) pairs, applied from the end of the file backwards.
    edits: list[tuple[yaml.Node, str]] = []
    appended: list[str] = []

    cp = _mapping(root, "control_plane")
    cp_port = _mapping(cp, "port")
    doc_cp = int(cp_port.value) if isinstance(cp_port, yaml.ScalarNode) else 50051
    if isinstance(cp_port, yaml.ScalarNode):
        edits.append((cp_port, "0"))
    elif cp is None:
        appended.append("control_plane:\n  port: 0\n")
    else:
        raise ValueError(f"{path}: give control_plane a port for the doc tests to move")

    gw = _mapping(root, "gateway")
    gw_port = _mapping(gw, "port")
    enabled = _mapping(gw, "enabled")
    doc_gw: int | None = None
    new_gw: int | None = None
    if not (isinstance(enabled, yaml.ScalarNode) and enabled.value.lower() == "false"):
        doc_gw = int(gw_port.value) if isinstance(gw_port, yaml.ScalarNode) else 8080
        new_gw = free_port(len(str(doc_gw))) if doc_gw else 0
        if isinstance(gw_port, yaml.ScalarNode):
            edits.append((gw_port, str(new_gw)))
        elif gw is None:
            appended.append(f"gateway:\n  port: {new_gw}\n")
        else:
            raise ValueError(f"{path}: give gateway a port for the doc tests to move")

    nats_port = _mapping(_mapping(root, "nats"), "port")
    if isinstance(nats_port, yaml.ScalarNode) and nats_port.value not in ("-1", "0"):
        edits.append((nats_port, "-1"))
    services = _mapping(root, "services")
    metrics_ports = [_mapping(cp, "metrics_port")]
    if isinstance(services, yaml.MappingNode):
        for _, service in services.value:
            port = _mapping(service, "port")
            if isinstance(port, yaml.ScalarNode) and port.value != "0":
                edits.append((port, "0"))
            metrics_ports.append(_mapping(service, "metrics_port"))
    # A metrics port the page scrapes: a free one of as many digits, mapped like the
    # gateway's.
    moved: dict[int, int] = {}
    for node in metrics_ports:
        if isinstance(node, yaml.ScalarNode) and node.value.isdigit() and node.value != "0":
            moved[int(node.value)] = free_port(len(node.value))
            edits.append((node, str(moved[int(node.value)])))

    for node, value in sorted(edits, key=lambda e: e[0].start_mark.index, reverse=True):
        text = _replace_scalar(text, node, value)
    if appended:
        text = text.rstrip("\n") + "\n" + "".join(appended)
    path.write_text(text, encoding="utf-8")
    return DeploymentFile(path, doc_cp, doc_gw, new_gw, moved)


def deployment_files(workspace: Path) -> list[Path]:
    """The YAML files that live in the workspace itself (not behind its links)."""
    found: list[Path] = []
    for directory, dirs, files in os.walk(workspace):
        dirs[:] = [d for d in dirs if d != ".llama-mesh"]  # os.walk skips linked dirs
        for name in files:
            path = Path(directory, name)
            if path.suffix in (".yaml", ".yml") and not path.is_symlink():
                found.append(path)
    return sorted(found)
