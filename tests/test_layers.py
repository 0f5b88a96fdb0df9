"""The import contracts in pyproject.toml are live: each fails when its rule is broken.

Each case copies the packages to a temporary directory, adds one forbidden import,
and runs `lint-imports` on the copy (PYTHONPATH puts the copy first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "python" / "llama_mesh", tmp_path / "llama_mesh")
    shutil.copytree(ROOT / "gateway" / "llama_mesh_gateway", tmp_path / "llama_mesh_gateway")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "client/_async.py",
            "import llama_mesh.jetstream.journal",
            "Process roles in layers",
        ),
        (
            "control_plane/servicer.py",
            "import llama_mesh.worker.runtime",
            "Process roles in layers",
        ),
        ("core/names.py", "import llama_mesh.client", "Process roles in layers"),
        (
            "control_plane/routing.py",
            "import llama_mesh.orchestrators",
            "Process roles in layers",
        ),
        ("worker/mesh_tools.py", "import llama_mesh.orchestrators", "Process roles in layers"),
        ("config/service.py", "import llama_mesh.jetstream.topology", "Process roles in layers"),
        ("core/names.py", "import llama_mesh.config", "Process roles in layers"),
        ("client/_sync.py", "import nats", "The client needs neither NATS nor llama-index"),
        (
            "jetstream/journal.py",
            "import workflows",
            "Only the worker (and what launches it) imports llama-index",
        ),
        (
            "testing/scripted_model.py",
            "import llama_mesh.core.names",
            "Process roles in layers",
        ),
        (
            "testing/scripted_model.py",
            "import llama_index.core",
            "Only the worker (and what launches it) imports llama-index",
        ),
        (
            "telemetry/metrics.py",
            "import llama_mesh.jetstream.journal",
            "Process roles in layers",
        ),
        (
            "telemetry/metrics.py",
            "import nats",
            "Telemetry imports neither NATS nor llama-index",
        ),
        (
            "../llama_mesh_gateway/status.py",
            "import llama_mesh.core.errors",
            "The gateway depends on the protos' descriptors",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    root = _copy(tmp_path)
    path = (root / "llama_mesh" / module).resolve()
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = _lint(root)
    assert result.returncode != 0, result.stdout
    assert f"{contract}" in result.stdout
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert contract in broken
