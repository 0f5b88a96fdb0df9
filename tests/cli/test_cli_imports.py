"""`llama-mesh` starts without the server side: the commands that only call a control
plane (and --version, --help) load neither NATS, llama-index, the control plane, the
worker, the launchers nor the gateway; `serve` and `up` import those when they run.

A newcomer's `llama-mesh --version` took 16 s at load 10 when the app imported the
control plane for every command. Python's own import log (PYTHONPROFILEIMPORTTIME)
of the real `llama-mesh` entry point says what each command loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "llama-mesh"
RUFF = Path(sys.executable).parent / "ruff"

# The packages (and their submodules) a command that calls a control plane never needs.
SERVER_SIDE = (
    "nats",
    "llama_index",
    "workflows",
    "llama_mesh.control_plane",
    "llama_mesh.worker",
    "llama_mesh.jetstream",
    "llama_mesh.launch",
    "llama_mesh_gateway",
    "opentelemetry",
)


def _imported(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ARGV with Python's import log on; the result and every module it imported."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    result = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    # Lines read "import time:   self |  cumulative |   package.module".
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    return result, modules


def _server_side(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in SERVER_SIDE))


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("--help",),
        ("status", "--help"),
        ("run", "--help"),
        ("sessions", "list", "--help"),
        ("serve", "control-plane", "--help"),
        ("serve", "service", "--help"),
        ("up", "--help"),
    ],
    ids=" ".join,
)
def test_a_command_starts_without_the_server_side(args: tuple[str, ...]) -> None:
    result, modules = _imported(str(CLI), *args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "llama_mesh.cli.app" in modules  # the log is read: the app was imported
    assert _server_side(modules) == []


def test_the_import_log_sees_the_server_side() -> None:
    """What the check above would report if the app imported the control plane again."""
    result, modules = _imported(sys.executable, "-c", "import llama_mesh.control_plane.server")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"nats", "llama_mesh.control_plane.server", "llama_mesh.jetstream"} <= set(
        _server_side(modules)
    )


def test_ruff_refuses_a_server_side_import_at_the_top_of_a_cli_module() -> None:
    """The lint that points at the line (TID253, pyproject.toml), before any test runs."""
    path = "python/llama_mesh/cli/status.py"
    source = (ROOT / path).read_text()
    result = subprocess.run(
        [str(RUFF), "check", "--no-cache", "--stdin-filename", path, "-"],
        cwd=ROOT,
        input=source + "\nfrom llama_mesh.control_plane.server import ControlPlaneServer\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TID253 `llama_mesh.control_plane` is banned at the module level" in result.stdout
    # The same import inside a function is how a command loads what it runs.
    inside = source + "\n\ndef _f() -> None:\n    import llama_mesh.control_plane.server\n"
    result = subprocess.run(
        [str(RUFF), "check", "--no-cache", "--stdin-filename", path, "-"],
        cwd=ROOT,
        input=inside,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "TID253" not in result.stdout, result.stdout
