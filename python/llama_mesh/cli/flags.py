"""Typer parameters for the settings options of config.command_line: a setting added
to a model becomes a flag of its `serve` command with no code here.

    @serve_app.command("gateway")
    @settings_flags(GATEWAY_OPTIONS)
    def serve_gateway(upstream: str, values: Mapping[str, Any]) -> None:
        gateway = parse(GatewayConfig, GATEWAY_OPTIONS, values)
"""

from __future__ import annotations

import functools
import inspect
import operator
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from llama_mesh.cli.target import EXIT_USAGE, error
from llama_mesh.config import Settings
from llama_mesh.config.command_line import REQUIRED, Option, from_values, problems

S = TypeVar("S", bound=Settings)


def _plain(annotation: Any) -> Any:
    """The type without its pydantic constraints (`Annotated[int, Field(ge=0)] | None`
    -> `int | None`): typer shows an Annotated it does not know as its repr, and the
    model checks the constraints anyway."""
    if typing.get_origin(annotation) is Annotated:
        return _plain(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, map(_plain, typing.get_args(annotation)))
    return annotation


def _parameter(option: Option) -> inspect.Parameter:
    annotation = _plain(option.annotation)
    default = None if option.repeated else option.default
    help = f"{option.help} Repeatable." if option.repeated else option.help
    if option.repeated:
        annotation = annotation | None  # not given: None, the model's default
    # A boolean is on/off: `--auth` / `--no-auth` (what to_argv writes).
    flags = [f"{option.flag}/--no-{option.flag[2:]}"] if annotation is bool else [option.flag]
    return inspect.Parameter(
        option.param,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[annotation, typer.Option(*flags, help=help)],
        default=inspect.Parameter.empty if default is REQUIRED else default,
    )


def settings_flags(
    opts: Sequence[Option],
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command one flag per option; it receives their values as `values`."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "values"]

        @functools.wraps(command)
        def with_flags(**kwargs: Any) -> None:
            values = {o.param: kwargs.pop(o.param) for o in opts}
            command(values=values, **kwargs)

        parameters = [*own, *(_parameter(o) for o in opts)]
        with_flags.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return with_flags

    return decorate


def parse(model: type[S], opts: Sequence[Option], values: Mapping[str, Any]) -> S:
    """`model` from the flags' values; exit 2 naming each bad flag if it does not validate."""
    try:
        return from_values(model, opts, values)
    except ValidationError as e:
        for line in problems(opts, e):
            error(line)
        raise typer.Exit(EXIT_USAGE) from None
