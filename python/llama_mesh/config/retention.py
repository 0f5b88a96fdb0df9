"""How long the mesh keeps what is finished: tasks once they end, sessions once idle.

RetentionConfig()                                  # tasks 1 day, idle sessions 7 days
RetentionConfig(finished_task_ttl=3600)            # finished tasks for an hour

A session can set its own (Session.ttl, Session.task_ttl); these are the defaults
for sessions that do not.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from llama_mesh.config.fields import Settings

DAY = 24 * 3600.0
MAX_TTL = 365 * DAY


class RetentionConfig(Settings):
    """How long finished tasks and idle sessions are kept (defaults of every session)."""

    finished_task_ttl: Annotated[
        float,
        Field(
            ge=1,
            le=MAX_TTL,
            description="Seconds a finished task (its record and its events) is kept after "
            "it ends, then deleted. A session's `task_ttl` overrides it.",
        ),
    ] = DAY
    idle_session_ttl: Annotated[
        float,
        Field(
            ge=1,
            le=MAX_TTL,
            description="Seconds a session is kept after the last task created in it (its "
            "record and saved workflow state), then deleted. A session's `ttl` overrides it.",
        ),
    ] = 7 * DAY
