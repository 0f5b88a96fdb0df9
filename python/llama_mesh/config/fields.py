"""What every settings model shares: the base class, port numbers, and the metadata
that tells the command line and the docs what a field's name or default alone cannot.

    class GatewayConfig(Settings):
        cors_origins: Annotated[list[str], Flag("--cors-origin"), Field(description="...")]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """A component's settings: unknown fields are errors, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Port = Annotated[int, Field(ge=0, le=65535)]


@dataclass(frozen=True)
class Flag:
    """The command-line option of a field, when it is not ``--field-name``
    (e.g. ``--cors-origin``, given once per value, for ``cors_origins``)."""

    name: str


@dataclass(frozen=True)
class DefaultText:
    """How the docs state a default that is not a literal value."""

    text: str
