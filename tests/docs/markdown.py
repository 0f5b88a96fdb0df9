"""The fenced code blocks of a Markdown page, with their `doc-test` annotations, each
given the role it plays (docs/contributing.md describes the conventions):

    page = parse_page(Path("docs/quickstart.md"))
    for block in page.blocks:
        print(block.line, block.role, block.language)

A block that has no role (a ```ts block with no annotation, say) is a `DocError`, as is an
annotation this module does not know: a new page or block that is neither run nor
skipped fails the test.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
ANNOTATION = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
ANNOTATION_START = re.compile(r"^\s*<!--\s*doc-test")

CONSOLE = {"console"}
PYTHON = {"python", "py"}
SHELL = {"bash", "sh", "shell"}
YAML = {"yaml", "yml"}
OUTPUT = {"text", "json"}

# Directives that describe the page, and those that describe the block they precede.
PAGE_DIRECTIVES = {"deployment", "fixture"}
BLOCK_DIRECTIVES = {
    "skip",
    "excerpt",
    "file",
    "figure",
    "background",
    "ready",
    "in",
    "timeout",
    "output",
}
# A plain block whose lines start with one of these holds commands, not a figure.
COMMANDS = re.compile(
    r"^\s*(\$ |curl |grpcurl |llama-mesh |python |node |npm |npx |go |make |kubectl |docker "
    r"|buf |\.venv/bin/)"
)


class DocError(ValueError):
    """A page breaks the doc-test conventions; the message names the line."""


class Role(enum.StrEnum):
    CONSOLE = "console"  # `$ command` lines and their expected output: run
    PYTHON = "python"  # a program: run
    SHELL = "shell"  # commands, one a line: run, each must exit 0
    DEPLOYMENT = "deployment"  # a deployment file: `llama-mesh check`
    OUTPUT = "output"  # the expected output of the block before it
    FILE = "file"  # written into the workspace for the blocks after it
    EXCERPT = "excerpt"  # a part of a file of the repository, checked textually
    FIGURE = "figure"  # a diagram, a layout, the shape of a message: not code
    SKIP = "skip"  # cannot run here; the reason says why


RUNNABLE = {Role.CONSOLE, Role.PYTHON, Role.SHELL}


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    directives: dict[str, str] = field(default_factory=dict)
    role: Role = Role.FIGURE
    output: Block | None = None  # the OUTPUT block that follows a runnable one

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def first_line(self) -> str:
        return next((s for s in self.text.splitlines() if s.strip()), "")

    @property
    def timeout(self) -> float:
        return float(self.directives.get("timeout", 60))


@dataclass
class Page:
    path: str  # relative to the repository root, e.g. docs/cli.md
    blocks: list[Block]
    directives: dict[str, list[str]] = field(default_factory=dict)

    @property
    def deployment(self) -> str | None:
        found = self.directives.get("deployment", [])
        return found[0] if found else None

    @property
    def fixtures(self) -> list[str]:
        return self.directives.get("fixture", [])


def _directive(body: str, where: str) -> tuple[str, str]:
    name, sep, value = body.partition(":")
    name, value = name.strip(), value.strip()
    if name not in PAGE_DIRECTIVES | BLOCK_DIRECTIVES:
        known = ", ".join(sorted(PAGE_DIRECTIVES | BLOCK_DIRECTIVES))
        raise DocError(f"{where}: unknown doc-test directive {name!r}; known: {known}")
    if name in {"skip", "excerpt", "file", "ready", "in", "timeout", "deployment", "fixture"}:
        if not value:
            raise DocError(f"{where}: `doc-test: {name}` needs a value (`{name}: ...`)")
    elif sep:
        raise DocError(f"{where}: `doc-test: {name}` takes no value")
    return name, value


def parse_page(path: Path, root: Path) -> Page:
    """The page's blocks and directives, each block with its role."""
    rel = path.relative_to(root).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    page_directives: dict[str, list[str]] = {}
    pending: dict[str, str] = {}
    pending_line = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        where = f"{rel}:{i + 1}"
        annotation = ANNOTATION.match(line)
        if annotation:
            name, value = _directive(annotation.group("body"), where)
            if name in PAGE_DIRECTIVES:
                page_directives.setdefault(name, []).append(value)
            else:
                if name in pending:
                    raise DocError(f"{where}: `doc-test: {name}` given twice for one block")
                pending[name] = value
                pending_line = i + 1
            i += 1
            continue
        if ANNOTATION_START.search(line):
            raise DocError(f"{where}: a doc-test annotation is one line: <!-- doc-test: ... -->")
        fence = FENCE.match(line)
        if fence is None:
            if pending and line.strip():
                raise DocError(
                    f"{rel}:{pending_line}: doc-test annotation not followed by a code block"
                )
            i += 1
            continue
        marker = fence.group("fence")
        language = fence.group("info").split()[0].lower() if fence.group("info").strip() else ""
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(marker) and not lines[i].strip().strip(marker[0])
        ):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise DocError(f"{where}: code block never closed")
        i += 1
        block = Block(rel, int(where.rsplit(":", 1)[1]), language, "\n".join(body) + "\n")
        block.directives, pending = pending, {}
        blocks.append(block)
    if pending:
        raise DocError(f"{rel}:{pending_line}: doc-test annotation not followed by a code block")
    page = Page(rel, blocks, page_directives)
    _assign_roles(page, lines)
    return page


def _follows_directly(previous: Block, block: Block, lines: list[str]) -> bool:
    """Only blank lines between `previous`'s closing fence and `block`'s opening one."""
    end = previous.line + previous.text.count("\n") + 1  # 1-based line of the closing fence
    return all(not lines[n - 1].strip() for n in range(end + 1, block.line))


def _assign_roles(page: Page, lines: list[str]) -> None:
    previous: Block | None = None
    for block in page.blocks:
        block.role = _role(block, previous, lines)
        if block.role is Role.OUTPUT:
            assert previous is not None
            previous.output = block
        previous = block


def _role(block: Block, previous: Block | None, lines: list[str]) -> Role:
    d, lang = block.directives, block.language
    exclusive = [k for k in ("skip", "excerpt", "file", "figure", "output") if k in d]
    if len(exclusive) > 1:
        raise DocError(f"{block.where}: {' and '.join(exclusive)} exclude each other")
    if "skip" in d:
        return Role.SKIP
    if "excerpt" in d:
        return Role.EXCERPT
    if "file" in d:
        return Role.FILE
    if "figure" in d:
        if lang in CONSOLE | PYTHON | SHELL | YAML:
            raise DocError(f"{block.where}: a ```{lang} block is code, not a figure")
        return Role.FIGURE
    runnable_before = previous is not None and previous.role in RUNNABLE
    if "output" in d or (
        lang in OUTPUT and runnable_before and _follows_directly(previous, block, lines)  # type: ignore[arg-type]
    ):
        if not runnable_before or previous is None or previous.role is Role.CONSOLE:
            raise DocError(
                f"{block.where}: an output block must follow a python or shell block "
                "(a console block holds its own output)"
            )
        if previous.output is not None:
            raise DocError(f"{block.where}: {previous.where} has an output block already")
        return Role.OUTPUT
    if "ready" in d and "background" not in d:
        raise DocError(f"{block.where}: `ready` is for a `background` block")
    if "background" in d and lang not in CONSOLE | SHELL:
        raise DocError(f"{block.where}: only a console or shell block runs in the background")
    if lang in CONSOLE:
        if not block.text.lstrip().startswith("$"):
            raise DocError(f"{block.where}: a console block starts with a `$ command` line")
        return Role.CONSOLE
    if lang in PYTHON:
        return Role.PYTHON
    if lang in SHELL:
        return Role.SHELL
    if lang in YAML:
        return Role.DEPLOYMENT
    if lang in {"", "text"}:
        if any(COMMANDS.match(s) for s in block.text.splitlines()):
            raise DocError(
                f"{block.where}: this block shows commands: make it ```console (`$ command` "
                "lines and their output) or ```bash so that it runs, or skip it with a reason"
            )
        return Role.FIGURE
    raise DocError(
        f"{block.where}: a ```{lang} block is neither run nor skipped: annotate it with "
        "<!-- doc-test: excerpt: PATH --> (it is part of a file), <!-- doc-test: file: PATH --> "
        "(the page writes it), <!-- doc-test: figure --> (not code: the shape of a message, "
        "say) or <!-- doc-test: skip: REASON -->"
    )
