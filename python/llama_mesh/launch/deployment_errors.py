"""What is wrong with a deployment file, said with the field and its line.

    DeploymentError(path, ["services.echo.replicas (line 7): must be at most 64"])

Every problem names the field as a dotted path into the file (``services.echo.replicas``),
its line when the YAML tree has it, and what would be valid (``describe`` turns one of
pydantic's errors into that line; ``at`` names a field for the checks that run after
validation).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import ErrorDetails

from llama_mesh.config.fields import problem


class DeploymentError(ValueError):
    """The deployment file is missing, is not YAML, or does not validate."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid deployment file {path}:\n{lines}")


@dataclass(frozen=True)
class Located:
    """The parsed YAML tree, to find the line of a field for error messages."""

    root: yaml.Node | None

    def line(self, loc: Sequence[int | str]) -> int | None:
        node = self.root
        found = node
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if key.value == part:
                        found, node = (key if part == loc[-1] else value), value
                        break
                else:
                    break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    break
                node = found = node.value[part]
            else:
                break
        return None if found is None else found.start_mark.line + 1


def fields_at(root: type[BaseModel], loc: Sequence[int | str]) -> list[str] | None:
    """The field names valid at `loc` (a path into the model `root`), if it is a model."""
    current: Any = root
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            if not isinstance(part, str) or part not in current.model_fields:
                return None
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
        if typing.get_origin(current) in (typing.Union, types.UnionType):
            models = [a for a in typing.get_args(current) if isinstance(a, type)]
            current = next((a for a in models if issubclass(a, BaseModel)), current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def dotted(loc: Sequence[int | str]) -> str:
    """`loc` as the file's reader writes it: ``services.echo.env[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def at(located: Located, loc: Sequence[int | str]) -> str:
    """The field at `loc` and its line: ``services.echo.replicas (line 7)``."""
    line = located.line(loc)
    return f"{dotted(loc)} (line {line})" if line is not None else dotted(loc)


def describe(located: Located, root: type[BaseModel], error: ErrorDetails) -> str:
    """One of pydantic's validation errors of model `root` as a line of DeploymentError."""
    loc: tuple[int | str, ...] = tuple(error["loc"])
    if loc[-1:] == ("[key]",):  # a mapping's key is at fault: name the key
        loc = loc[:-1]
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = fields_at(root, loc[:-1]) or []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (
            f"{at(located, loc)}: unknown field {loc[-1]!r}{hint}; "
            f"valid fields here: {', '.join(valid)}"
        )
    if kind == "missing":
        return f"{at(located, loc[:-1]) if loc[:-1] else 'the file'}: {loc[-1]!r} is required"
    return f"{at(located, loc)}: {problem(error)}"
