"""The options of each ``serve`` command, derived from the settings models, and the
arguments that set them: what ``up`` passes to the processes it starts.

    SERVICE_OPTIONS                              # --name, --description, ..., --credentials
    to_argv(SERVICE_OPTIONS, config, nats)       # ["--name", "echo", ..., "--port", "0"]
    from_values(ServiceConfig, SERVICE_OPTIONS, {"name": "echo", "max_attempts": 5})

An option is ``--field-name`` unless the field says otherwise (``Flag``); a nested model
(``retry``) adds its fields' options; a list is one option given once per value. A
value goes on the command line in its JSON form (a service kind by name).
"""

from __future__ import annotations

import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, PlainSerializer, ValidationError

from llama_mesh.config.control_plane import ControlPlaneConfig
from llama_mesh.config.fields import Flag, Settings, problem
from llama_mesh.config.gateway import GatewayConfig
from llama_mesh.config.nats import NatsConfig, default_data_dir
from llama_mesh.config.security import SecurityConfig
from llama_mesh.config.service import ServiceConfig

S = TypeVar("S", bound=Settings)

REQUIRED: Any = ...
"""The default of an option that must be given."""


@dataclass(frozen=True)
class Option:
    """One command-line option: the field of a settings model it sets."""

    model: type[Settings]
    path: tuple[str, ...]  # e.g. ("retry", "max_attempts")
    flag: str
    annotation: Any  # the type the command line parses
    default: Any
    help: str

    @property
    def param(self) -> str:
        """The option's name as a Python identifier (``max_attempts``)."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def field(self) -> str:
        """The dotted field it sets (``retry.max_attempts``)."""
        return ".".join(self.path)

    @property
    def repeated(self) -> bool:
        return typing.get_origin(self.annotation) is list


def options(
    model: type[Settings],
    *,
    include: Collection[str] | None = None,
    exclude: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> list[Option]:
    """The options of `model`'s fields (`include` only, none of `exclude`), required
    ones first; `defaults` replaces the model's default of a field on the command line."""
    found = list(_options(model, model, (), include, exclude, defaults or {}))
    return sorted(found, key=lambda o: o.default is not REQUIRED)


def _options(
    root: type[Settings],
    model: type[BaseModel],
    prefix: tuple[str, ...],
    include: Collection[str] | None,
    exclude: Collection[str],
    defaults: Mapping[str, Any],
) -> typing.Iterator[Option]:
    for name, info in model.model_fields.items():
        if (include is not None and name not in include) or name in exclude:
            continue
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _options(root, annotation, (*prefix, name), None, (), {})
            continue
        flag = f"--{name.replace('_', '-')}"
        for meta in info.metadata:
            if isinstance(meta, Flag):
                flag = meta.name
            elif isinstance(meta, PlainSerializer):
                annotation = meta.return_type  # given in its serialized form
        if name in defaults:
            value = defaults[name]
        elif info.is_required():
            value = REQUIRED
        else:
            value = info.get_default(call_default_factory=True)
            for meta in info.metadata:
                if isinstance(meta, PlainSerializer):
                    value = meta.func(value)  # type: ignore[call-arg]
        yield Option(root, (*prefix, name), flag, annotation, value, info.description or "")


def to_argv(opts: Sequence[Option], *settings: Settings) -> list[str]:
    """The arguments that set every option of `opts` to its value in `settings`
    (unset optional values are left out)."""
    dumps = [(s, s.model_dump(mode="json")) for s in settings]
    argv: list[str] = []
    for option in opts:
        value: Any = next(d for s, d in dumps if isinstance(s, option.model))
        for part in option.path:
            value = value[part]
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(option.flag if value else f"--no-{option.flag.removeprefix('--')}")
        elif isinstance(value, list):
            for item in value:
                argv += [option.flag, str(item)]
        else:
            argv += [option.flag, str(value)]
    return argv


def from_values(model: type[S], opts: Sequence[Option], values: Mapping[str, Any]) -> S:
    """`model` from the parsed values of its options (by ``Option.param``); a list
    option that was not given (None) keeps the model's default."""
    data: dict[str, Any] = {}
    for option in opts:
        if option.model is not model or option.param not in values:
            continue
        value = values[option.param]
        if value is None and option.repeated:
            continue
        target = data
        for part in option.path[:-1]:
            target = target.setdefault(part, {})
        target[option.path[-1]] = value
    return model.model_validate(data)


def problems(opts: Sequence[Option], error: ValidationError) -> list[str]:
    """One line per problem of `error`, naming the option that set the field."""
    out = []
    for e in error.errors(include_url=False):
        loc = tuple(str(part) for part in e["loc"])
        flag = next((o.flag for o in opts if loc[: len(o.path)] == o.path), ".".join(loc))
        out.append(f"{flag}: {problem(e)}")
    return out


# Settings `up` carries out itself (it makes the certificates), which no `serve`
# command takes.
_UP_ONLY = ("tls",)
_NATS_TLS = ("tls_ca", "tls_cert", "tls_key")
# What each `serve` command takes besides the addresses it is given.
NATS_OPTIONS = options(
    NatsConfig,
    include=("data_dir", "host", "port", "server_config"),
    defaults={"data_dir": default_data_dir()},
)
CONTROL_PLANE_OPTIONS = [
    *options(ControlPlaneConfig),
    *options(NatsConfig, include=("prefix", "replicas", "credentials", "nkey_seed", *_NATS_TLS)),
    # `serve` asks for authentication with --auth (on loopback it may run without;
    # beyond loopback it needs TLS and --auth); `up` turns it on by default.
    *options(SecurityConfig, exclude=_UP_ONLY, defaults={"auth": False}),
]
SERVICE_OPTIONS = [
    *options(ServiceConfig),
    *options(NatsConfig, include=("credentials", "nkey_seed", *_NATS_TLS)),
    # How the replica's own Service API checks callers.
    *options(SecurityConfig, exclude=("install_keys", *_UP_ONLY), defaults={"auth": False}),
]
GATEWAY_OPTIONS = [
    *options(GatewayConfig, exclude=("enabled", "https")),
    # The gateway asks the control plane who a scraper is, unless /metrics is open.
    *options(SecurityConfig, include=("open_metrics",)),
]
