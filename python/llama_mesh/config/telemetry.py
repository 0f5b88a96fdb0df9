"""How the mesh's processes log.

    LoggingConfig(level="debug", format="json")

The deployment file's ``logging:`` section: every component's level (`up` gives each
child ``--log-level`` and asks for JSON lines, ``--log-format json``), and what `up`
shows on its terminal. docs/operations.md explains it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from llama_mesh.config.fields import Settings

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]


class LoggingConfig(Settings):
    """How the components log: `up` collects every line (``llama-mesh logs`` shows
    them) and shows the more severe ones on its terminal."""

    level: Annotated[
        LogLevel,
        Field(description="Least severe level the components log: debug, info, warning or error."),
    ] = "info"
    components: Annotated[
        dict[str, LogLevel],
        Field(
            description="A level of its own per component: `nats`, `control_plane`, "
            "`gateway` or a service id, e.g. `{echo: debug}`."
        ),
    ] = Field(default_factory=dict)
    terminal_level: Annotated[
        LogLevel,
        Field(description="Least severe level `up` shows on its terminal (it keeps them all)."),
    ] = "warning"
    format: Annotated[
        LogFormat,
        Field(description="How `up` shows them: `text` for people, `json` one object a line."),
    ] = "text"

    def level_of(self, component: str) -> LogLevel:
        return self.components.get(component, self.level)
