"""Every command and snippet in README.md and docs/*.md runs and prints what the page
says (docs/contributing.md: the conventions).

A page is parsed first (`test_page_follows_the_conventions`: every block is run or
skipped with a reason), then run against a real deployment in a workspace of its own
(`test_page_runs`). Skipped blocks are listed as skipped tests, so they stay visible.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from docs.known_failures import KNOWN_FAILURES
from docs.markdown import Block, DocError, Role, parse_page
from docs.runner import PageRun

ROOT = Path(__file__).resolve().parents[2]


def pages() -> list[Path]:
    """README.md and every page under docs/: a new page is picked up by itself."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _skipped() -> list[Block]:
    found: list[Block] = []
    for path in pages():
        try:
            found += [b for b in parse_page(path, ROOT).blocks if b.role is Role.SKIP]
        except DocError:
            continue  # test_page_follows_the_conventions reports it
    return found


@pytest.mark.parametrize("path", pages(), ids=_id)
def test_page_follows_the_conventions(path: Path) -> None:
    parse_page(path, ROOT)


@pytest.mark.parametrize("block", _skipped(), ids=lambda b: b.where)
def test_skipped_block(block: Block) -> None:
    pytest.skip(f"{block.where}: {block.directives['skip']}")


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", pages(), ids=_id)
async def test_page_runs(path: Path, tmp_path: Path) -> None:
    try:
        page = parse_page(path, ROOT)
    except DocError as e:
        pytest.fail(str(e))
    async with PageRun(page, ROOT, tmp_path) as run:
        await run.run()
    known = {piece: why for (p, piece), why in KNOWN_FAILURES.items() if p == page.path}
    for piece in known:
        named = [b for b in page.blocks if piece in b.text]
        assert len(named) == 1, f"KNOWN_FAILURES: {piece!r} names {len(named)} blocks of {path}"
    expected = [f for f in run.failures if any(piece in f.block.text for piece in known)]
    unexpected = [str(f) for f in run.failures if f not in expected]
    fixed = [piece for piece in known if not any(piece in f.block.text for f in expected)]
    if unexpected or fixed:
        message = "\n\n".join(unexpected)
        if fixed:
            message += "\n\nnow pass, remove from KNOWN_FAILURES: " + ", ".join(map(repr, fixed))
        pytest.fail(message, pytrace=False)
    if expected:
        pytest.xfail("known failures: " + "; ".join(known.values()))
