"""Loads what a deployment file names by `module:attribute`: a Workflow (or a runner that
builds its workflow per task, as the built-in agent service's), or a tool."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from workflows import Workflow

from llama_mesh.worker.workflow_runner import WorkflowRunner


class WorkflowLoadError(ValueError):
    """A `module:attribute` reference does not name what it should."""


def load_object(reference: str, path: str | Path | None = None, what: str = "workflow") -> Any:
    """Import `module:attribute` (after adding `path` to sys.path) and return the attribute."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise WorkflowLoadError(
            f"{reference!r} is not a {what} reference: expected 'module:attribute', "
            "e.g. 'my_app.workflows:echo'"
        )
    if path is not None:
        resolved = str(Path(path).resolve())
        if resolved not in sys.path:
            sys.path.insert(0, resolved)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise WorkflowLoadError(f"cannot import module {module_name!r}: {err}") from err
    except SyntaxError as err:
        # Where, as editors and compilers say it (file:line: what), and the line itself.
        where = f"{err.filename}:{err.lineno}: " if err.filename else ""
        line = f"\n    {err.text.rstrip()}" if err.text else ""
        raise WorkflowLoadError(
            f"cannot import module {module_name!r}: {where}{err.msg}{line}"
        ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise WorkflowLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None


def load_workflow(reference: str, path: str | Path | None = None) -> Workflow | WorkflowRunner:
    """Import `module:attribute` (after adding `path` to sys.path) and return the Workflow.

    The attribute may be a Workflow instance, a Workflow subclass (instantiated with no
    arguments) or a function returning a Workflow (or a WorkflowRunner).

        >>> load_workflow("examples.quickstart.workflows:echo")  # doctest: +SKIP
    """
    target = load_object(reference, path)
    if (isinstance(target, type) and issubclass(target, Workflow)) or (
        callable(target) and not isinstance(target, Workflow | WorkflowRunner)
    ):
        target = target()
    if not isinstance(target, Workflow | WorkflowRunner):
        raise WorkflowLoadError(
            f"{reference!r} is a {type(target).__name__}, not a llama-index Workflow"
        )
    return target


def load_tool(reference: str, path: str | Path | None = None) -> Any:
    """A tool for a tool service: a llama-index tool, or a function (sync or async)."""
    from llama_index.core.tools import BaseTool

    target = load_object(reference, path, "tool")
    if isinstance(target, BaseTool) or (callable(target) and not isinstance(target, type)):
        return target
    raise WorkflowLoadError(
        f"{reference!r} is a {type(target).__name__}, not a llama-index tool or a function"
    )
