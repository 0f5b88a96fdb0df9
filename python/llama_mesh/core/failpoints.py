"""Failpoints: named places where a test makes the process fail, to check what a
crash at exactly that place leaves behind, instead of racing a timer.

In the code, a failpoint does nothing unless a test armed it:

    failpoint("task_creation.recorded")

A test arms one in its own process with what should happen there (usually raising,
as a crash would end the call):

    with armed("task_creation.recorded", crash):
        ...

or in a child process through the environment, with an action:

    LLAMA_MESH_FAILPOINTS=attempt.committed=exit llama-mesh serve service ...

``exit`` ends the process at once (``os._exit``: no clean-up, as after SIGKILL);
``stop`` stops it (SIGSTOP; the test continues it with SIGCONT). Either way the
process first writes ``failpoint NAME`` on stderr, so the test knows it got there,
and a failpoint armed this way fires once.

A test in the same process may also hold async code at a place until it lets it go
(a held callback, while what it would handle piles up):

    async def until_released() -> None:
        await released.wait()

    with holding("waiters.final_held", until_released):   # at `await held(...)`
        ...
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Iterator

ENV = "LLAMA_MESH_FAILPOINTS"

Action = Callable[[], None]
Hold = Callable[[], Awaitable[None]]


class FailpointCrash(Exception):
    """Raised by an armed failpoint in place of a crash."""


def crash() -> None:
    """The action of a failpoint that ends the call as a crash would."""
    raise FailpointCrash("failpoint: crashed here")


def _exit() -> None:
    os._exit(137)


def _stop() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


_ACTIONS: dict[str, Action] = {"exit": _exit, "stop": _stop}


def _from_env(value: str) -> dict[str, Action]:
    armed: dict[str, Action] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, action = item.partition("=")
        if action not in _ACTIONS:
            raise ValueError(f"{ENV}: {item!r}: the action must be one of {sorted(_ACTIONS)}")
        armed[name] = _ACTIONS[action]
    return armed


_armed: dict[str, Action] = _from_env(os.environ.get(ENV, ""))
_once = set(_armed)  # armed by the environment: fire once


def failpoint(name: str) -> None:
    """Run what a test armed at `name` (nothing otherwise)."""
    action = _armed.get(name)
    if action is not None:
        if name in _once:
            del _armed[name]
        # To the process's own stderr: inside a task, sys.stderr is the task's log.
        os.write(2, f"failpoint {name}\n".encode())
        action()


@contextlib.contextmanager
def armed(name: str, action: Action) -> Iterator[None]:
    """Arm the failpoint `name` with `action` for the duration of the block."""
    _armed[name] = action
    try:
        yield
    finally:
        _armed.pop(name, None)


_holds: dict[str, Hold] = {}


async def held(name: str) -> None:
    """Wait for what a test holds at `name` (nothing otherwise)."""
    hold = _holds.get(name)
    if hold is not None:
        await hold()


@contextlib.contextmanager
def holding(name: str, hold: Hold) -> Iterator[None]:
    """Have `await held(name)` await `hold()` for the duration of the block."""
    _holds[name] = hold
    try:
        yield
    finally:
        _holds.pop(name, None)
