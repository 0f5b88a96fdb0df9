"""The committed TypeScript and Go code is what the protos generate today (the
polyglot half of `make fresh`; skipped where the plugins are not installed)."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from .conftest import ROOT
from processes import run

TEMPLATES = {
    "typescript": (
        ROOT / "clients" / "typescript" / "buf.gen.yaml",
        "clients/typescript/src/gen",
        ROOT / "node_modules" / ".bin" / "protoc-gen-es",
    ),
    "go": (
        ROOT / "clients" / "go" / "buf.gen.yaml",
        "clients/go/gen",
        ROOT / "clients" / "go" / "bin" / "protoc-gen-go-grpc",
    ),
}


def differences(left: Path, right: Path) -> list[str]:
    """Files that differ, or exist on one side only, between two trees."""
    cmp = filecmp.dircmp(left, right)
    found = [f"only in {left}: {n}" for n in cmp.left_only]
    found += [f"only in {right}: {n}" for n in cmp.right_only]
    found += [f"differs: {left / n}" for n in cmp.diff_files + cmp.funny_files]
    for sub in cmp.common_dirs:
        found += differences(left / sub, right / sub)
    return found


@pytest.mark.timeout(60)
@pytest.mark.parametrize("language", sorted(TEMPLATES))
async def test_generated_code_is_fresh(language: str, buf: str, tmp_path: Path) -> None:
    template, out, plugin = TEMPLATES[language]
    if not plugin.exists():
        pytest.skip(f"{plugin.relative_to(ROOT)} is not installed: run make install")
    (await run(buf, "generate", "--template", str(template), "-o", str(tmp_path))).check()
    stale = differences(ROOT / out, tmp_path / out)
    assert not stale, f"{out} is stale: run make gen-clients and commit\n" + "\n".join(stale)
