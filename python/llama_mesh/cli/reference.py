"""The settings tables of docs/deployment.md and docs/cli.md, rendered from the models
and the commands themselves, so the docs cannot drift from the code.

    python -m llama_mesh.cli.reference           # rewrite the tables in docs/
    python -m llama_mesh.cli.reference --check   # exit 1 if a table is out of date

A table sits between ``<!-- settings: NAME -->`` and ``<!-- end settings -->``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, PlainSerializer
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python
from typer.core import TyperOption
from typer.main import get_command

from llama_mesh.cli.app import app
from llama_mesh.config import (
    ControlPlaneConfig,
    DefaultText,
    GatewayConfig,
    LoggingConfig,
    ModelConfig,
    NatsConfig,
    OtelConfig,
    SecurityConfig,
    ServiceConfig,
    Settings,
)
from llama_mesh.config.command_line import (
    CONTROL_PLANE_OPTIONS,
    GATEWAY_OPTIONS,
    NATS_OPTIONS,
    SERVICE_OPTIONS,
    Option,
)
from llama_mesh.config.restarts import RestartConfig
from llama_mesh.launch.deployment import Deployment, OrchestratorSpec, ServiceSpec

DOCS = Path(__file__).resolve().parents[3] / "docs"
BLOCK = re.compile(r"(<!-- settings: (\S+) -->\n)(.*?)(<!-- end settings -->)", re.S)

# Where each model's settings sit in the deployment file.
SECTIONS: dict[type[Settings], str] = {
    NatsConfig: "nats",
    ControlPlaneConfig: "control_plane",
    GatewayConfig: "gateway",
    ServiceConfig: "services.<id>",
    SecurityConfig: "security",
    ModelConfig: "models.<id>",
}


def _literal(value: Any) -> str:
    if value is None:
        return "none"
    value = to_jsonable_python(value)
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def _default(info: FieldInfo) -> str:
    for meta in info.metadata:
        if isinstance(meta, DefaultText):
            return meta.text
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    for meta in info.metadata:
        if isinstance(meta, PlainSerializer):
            value = meta.func(value)  # type: ignore[call-arg]
    return _literal(value)


def _rows(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(field, default, what) of each field; a nested model without a DefaultText of
    its own is flattened into its fields (``retry.max_attempts``)."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if nested and not any(isinstance(m, DefaultText) for m in info.metadata):
            yield from _rows(annotation, f"{prefix}{name}.")  # type: ignore[arg-type]
        else:
            yield f"`{prefix}{name}`", _default(info), info.description or ""


def _table(header: tuple[str, ...], rows: Iterator[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def model_table(model: type[BaseModel]) -> str:
    """The deployment file's table of `model`'s fields."""
    return _table(("field", "default", "what"), _rows(model))


def _serve_options(name: str) -> list[TyperOption]:
    """The visible options of `llama-mesh serve NAME`, as the command parses them."""
    group: Any = get_command(app)
    params = group.commands["serve"].commands[name].params
    return [p for p in params if isinstance(p, TyperOption) and not p.hidden]


# Where `up` takes the options that are not settings from.
WIRING = {
    "nats": "`nats.url`, or the embedded server's",
    "control_plane": "the control plane `up` started",
    "upstream": "the control plane `up` started",
    "path": "`services.<id>.path`",
}


def _file_field(param: str, option: Option | None) -> str:
    if option is None:
        return WIRING.get(param, "—")
    if option.model is ServiceConfig and option.path == ("name",):
        return "the key in `services`"
    return f"`{SECTIONS[option.model]}.{option.field}`"


def serve_table(name: str, opts: list[Option]) -> str:
    """The options of `llama-mesh serve NAME`: each with its default and, for a
    setting, the field of the deployment file it comes from."""
    by_param = {o.param: o for o in opts}
    rows = []
    for param in _serve_options(name):
        option = by_param.get(str(param.name))
        if param.required:
            default = "required"
        elif param.default is None or param.multiple:
            default = "none"
        else:
            default = _literal(param.default)
        rows.append(
            (
                f"`{param.opts[0]}`",
                default,
                _file_field(str(param.name), option),
                param.help or "",
            )
        )
    return _table(("option", "default", "deployment file", "what"), iter(rows))


TABLES: dict[str, Callable[[], str]] = {
    "deployment": lambda: model_table(Deployment),
    "nats": lambda: model_table(NatsConfig),
    "control_plane": lambda: model_table(ControlPlaneConfig),
    "gateway": lambda: model_table(GatewayConfig),
    "security": lambda: model_table(SecurityConfig),
    "models": lambda: model_table(ModelConfig),
    "logging": lambda: model_table(LoggingConfig),
    "otel": lambda: model_table(OtelConfig),
    "services": lambda: model_table(ServiceSpec),
    "orchestrator": lambda: model_table(OrchestratorSpec),
    "restarts": lambda: model_table(RestartConfig),
    "serve-nats": lambda: serve_table("nats", NATS_OPTIONS),
    "serve-control-plane": lambda: serve_table("control-plane", CONTROL_PLANE_OPTIONS),
    "serve-service": lambda: serve_table("service", SERVICE_OPTIONS),
    "serve-gateway": lambda: serve_table("gateway", GATEWAY_OPTIONS),
}


def rendered(text: str) -> str:
    """`text` with every settings block rendered again."""

    def block(match: re.Match[str]) -> str:
        return f"{match.group(1)}{TABLES[match.group(2)]()}{match.group(4)}"

    return BLOCK.sub(block, text)


def main(argv: list[str]) -> int:
    stale = []
    for path in (DOCS / "deployment.md", DOCS / "cli.md", DOCS / "security.md"):
        text = path.read_text(encoding="utf-8")
        new = rendered(text)
        if new != text:
            stale.append(path)
            if "--check" not in argv:
                path.write_text(new, encoding="utf-8")
    if stale and "--check" in argv:
        print(f"out of date: {', '.join(map(str, stale))}; run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
