"""How `llama-mesh up` restarts a process of the deployment that dies.

RestartConfig()                               # at most 3 restarts in any 5 minutes
RestartConfig(max_restarts=10, window=60)     # at most 10 in any minute
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from llama_mesh.config.fields import Settings


class RestartConfig(Settings):
    """A rate: a process that died is restarted unless it was restarted `max_restarts`
    times in the last `window` seconds already (a crash weeks after the last one is
    restarted again)."""

    max_restarts: Annotated[
        int,
        Field(
            ge=0,
            le=1000,
            description="Restarts of one process allowed within `window`; one more death "
            "in that time and it stays down (NATS or the control plane: `up` stops).",
        ),
    ] = 3
    window: Annotated[
        float,
        Field(gt=0, description="Seconds over which `max_restarts` is counted."),
    ] = 300.0
