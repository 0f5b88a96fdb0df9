"""Remote tracebacks: what a failed task's google.rpc.Status says about where it failed.

A workflow that raises fails its task with a Status whose details carry a
``google.rpc.DebugInfo``: ``stack_entries`` are the frames of the exception (one entry
per frame, most recent call last, as Python prints them) and ``detail`` is the whole
exception chain as Python prints it (causes and contexts included). Both are capped,
so a deep recursion or a huge message cannot bloat the task's record: the innermost
frames and the end of the chain (the exception that was raised last) are kept.

    >>> try:
    ...     {}["missing_key"]
    ... except KeyError as err:
    ...     info = debug_info(err)
    >>> info.detail.splitlines()[-1]
    "KeyError: 'missing_key'"
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from types import TracebackType

from google.rpc import error_details_pb2, status_pb2

#: Frames kept from the outermost end of the stack, and from the innermost end.
OUTER_FRAMES = 10
INNER_FRAMES = 40
#: Characters of one stack entry, and of the whole detail (the exception chain).
MAX_ENTRY_CHARS = 1000
MAX_DETAIL_CHARS = 16_000
TRUNCATED = "…"


def _entry(frame: traceback.FrameSummary) -> str:
    text = f'File "{frame.filename}", line {frame.lineno}, in {frame.name}'
    if frame.line:
        text += f"\n    {frame.line.strip()}"
    return text if len(text) <= MAX_ENTRY_CHARS else text[: MAX_ENTRY_CHARS - 1] + TRUNCATED


def _in(module: str, packages: Sequence[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def user_frames(err: BaseException, skip: Sequence[str] = ()) -> TracebackType | None:
    """`err`'s traceback without its leading frames in the `skip` packages (the
    runtime's plumbing above the code that raised); all of it if nothing else is left."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        if not _in(str(tb.tb_frame.f_globals.get("__name__", "")), skip):
            break
        tb = tb.tb_next
    else:
        return err.__traceback__
    return tb


def stack_entries(err: BaseException, skip: Sequence[str] = ()) -> list[str]:
    """The frames of `err`'s traceback, most recent call last, the middle of a deep
    stack left out (one entry says how many frames)."""
    frames = traceback.extract_tb(user_frames(err, skip))
    entries = [_entry(frame) for frame in frames]
    if len(entries) <= OUTER_FRAMES + INNER_FRAMES:
        return entries
    left_out = len(entries) - OUTER_FRAMES - INNER_FRAMES
    return [
        *entries[:OUTER_FRAMES],
        f"[{left_out} frames left out]",
        *entries[-INNER_FRAMES:],
    ]


def chain_text(err: BaseException, skip: Sequence[str] = ()) -> str:
    """`err` and the exceptions it was raised from, as Python prints them, cut from
    the front to MAX_DETAIL_CHARS (the last exception is at the end)."""
    text = "".join(traceback.format_exception(type(err), err, user_frames(err, skip)))
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    kept = text[-(MAX_DETAIL_CHARS - 40) :]
    return f"{TRUNCATED} ({len(text) - len(kept)} characters left out)\n" + kept


def debug_info(err: BaseException, skip: Sequence[str] = ()) -> error_details_pb2.DebugInfo:
    """The DebugInfo of a failure: `err`'s frames and its exception chain. Leading
    frames of the `skip` packages (e.g. the runtime that called the workflow) are left
    out."""
    return error_details_pb2.DebugInfo(
        stack_entries=stack_entries(err, skip), detail=chain_text(err, skip)
    )


def find_debug_info(status: status_pb2.Status) -> error_details_pb2.DebugInfo | None:
    """The DebugInfo detail of `status`, if it has one."""
    for detail in status.details:
        if detail.Is(error_details_pb2.DebugInfo.DESCRIPTOR):
            info = error_details_pb2.DebugInfo()
            detail.Unpack(info)
            return info
    return None


def remote_traceback(status: status_pb2.Status) -> str:
    """The traceback text a task error carries ('' when it has none): the exception
    chain, or else its stack entries."""
    info = find_debug_info(status)
    if info is None:
        return ""
    if info.detail:
        return str(info.detail).rstrip("\n")
    return "\n".join(info.stack_entries)
