"""A module that must never be imported by a replica restoring a Context: the test
that plants its name in task input checks sys.modules for it."""

from __future__ import annotations

from pydantic import BaseModel


class Planted(BaseModel):
    value: int = 0
