"""Console transcripts and the comparison of expected with actual output.

A transcript is `$ command` lines (a line ending in `\\` continues on the next), each
followed by the output the doc expects. Output is compared exactly, line by line
(trailing spaces and trailing blank lines aside), except that `…` stands for what
varies: inside a line it matches any text on that line, and a line that is only `…`
matches any number of lines.

    [(command, expected)] = commands("$ echo hi\\nhi\\n")
    assert matches(expected, "hi\\n")
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

ELLIPSIS = "…"


@dataclass
class Command:
    text: str  # what the shell runs (continuation lines included)
    expected: str  # the output the doc shows, "" if none
    offset: int  # line of the `$` within the block, 0-based


def commands(block: str) -> list[Command]:
    """The commands of a console transcript, each with its expected output."""
    found: list[Command] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not (line.startswith("$ ") or line == "$"):
            raise ValueError(f"line {i + 1} is output before any `$ command`")
        start = i
        command = [line[2:]]
        while command[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        i += 1
        output: list[str] = []
        while i < len(lines) and not (lines[i].startswith("$ ") or lines[i] == "$"):
            output.append(lines[i])
            i += 1
        found.append(Command("\n".join(command), "\n".join(output), start))
    return found


def _normalize(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def pattern(expected: str) -> re.Pattern[str]:
    """The regular expression that output matching `expected` matches (as a whole)."""
    parts: list[str] = []
    for line in _normalize(expected):
        if line.strip() == ELLIPSIS:
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*?".join(re.escape(p) for p in line.split(ELLIPSIS)) + r"\n")
    return re.compile("".join(parts))


def _joined(actual: str) -> str:
    lines = _normalize(actual)
    return "\n".join(lines) + "\n" if lines else ""


def matches(expected: str, actual: str) -> bool:
    """Whether `actual` is what `expected` shows, `…` standing for what varies."""
    return pattern(expected).fullmatch(_joined(actual)) is not None


def starts_with(expected: str, actual: str) -> bool:
    """Whether `actual` begins with what `expected` shows (a server's output so far)."""
    return pattern(expected).match(_joined(actual)) is not None


def diff(expected: str, actual: str) -> str:
    """Where the output stops agreeing with the doc, then a line-by-line diff."""
    want, got = _normalize(expected), _joined(actual)
    agreed = 0
    for k in range(len(want), -1, -1):
        found = pattern("\n".join(want[:k])).match(got)
        if found:
            agreed, rest = k, got[found.end() :]
            break
    where = (
        f"agrees with the doc's first {agreed} lines; then the doc shows {want[agreed]!r}"
        if agreed < len(want)
        else "has more than the doc shows"
    )
    shown = rest.splitlines()[:5]
    lines = difflib.unified_diff(
        want, _normalize(actual), "the doc", "the program", lineterm="", n=2
    )
    return f"the output {where}, the program printed {shown!r}\n" + "\n".join(lines)
