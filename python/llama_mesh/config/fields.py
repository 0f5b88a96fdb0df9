"""What every settings model shares: the base class, port numbers, and the metadata
that tells the command line and the docs what a field's name or default alone cannot.

    class GatewayConfig(Settings):
        cors_origins: Annotated[list[str], Flag("--cors-origin"), Field(description="...")]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import ErrorDetails


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
    """How the docs state a default that is not a literal value (Markdown)."""

    text: str


def matching(pattern: re.Pattern[str], what: str, expected: str) -> AfterValidator:
    """A check that a string field matches `pattern`; the error names `what` the
    field is and what is `expected`.

        prefix: Annotated[str, matching(PREFIX, "a valid prefix", "1-32 of a-z")]
    """

    def check(value: str | None) -> str | None:
        # An optional field's None (its default, written out) has nothing to match.
        if value is not None and not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}: {expected}")
        return value

    return AfterValidator(check)


def problem(error: ErrorDetails) -> str:
    """What is wrong with a value, from one of pydantic's errors: the validator's own
    message, or pydantic's with the value it got."""
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] != "value_error" and "input" in error and not isinstance(error["input"], dict):
        message = f"{message} (got {error['input']!r})"
    return message


def default(model: type[BaseModel], field: str) -> Any:
    """The default of `model`'s `field`, for code that offers the same setting under
    another name (the llama_deploy-style configs)."""
    return model.model_fields[field].get_default(call_default_factory=True)
