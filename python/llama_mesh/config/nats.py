"""Where the mesh's NATS JetStream is, and how the mesh names its resources in it.

NatsConfig()                                     # `up` starts an embedded nats-server
NatsConfig(url=["nats://a:4222", "nats://b:4222"], replicas=3)   # an existing cluster
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from llama_mesh.config.fields import DefaultText, Flag, Settings, matching

NATS_URL = re.compile(r"(nats|tls|ws|wss)://[^\s/]+")
PREFIX = re.compile(r"[a-z][a-z0-9_]{0,31}")

STATE_DIR = Path(".llama-mesh")
"""Where `up` and deploy_core keep their state (a deployment file's ``state_dir``)."""


def default_data_dir(state_dir: Path = STATE_DIR) -> Path:
    """Where the embedded nats-server keeps JetStream's data unless told otherwise."""
    return state_dir / "nats"


class NatsConfig(Settings):
    """Where the mesh's NATS JetStream is: embedded (default) or an existing cluster."""

    url: Annotated[
        str | list[str] | None,
        DefaultText("none: embedded"),
        Field(
            description="A NATS URL or a list of URLs of one cluster (`nats://`, `tls://`, "
            "`ws://`, `wss://`). Given, `up` starts no nats-server and uses this one."
        ),
    ] = None
    data_dir: Annotated[
        Path | None,
        DefaultText("`{state_dir}/nats`"),
        Field(description="JetStream storage of the embedded server. Only without `url`."),
    ] = None
    host: Annotated[str, Field(description="Where the embedded server listens.")] = "127.0.0.1"
    port: Annotated[
        int,
        Field(
            ge=-1,
            le=65535,
            description="Client port of the embedded server; `-1` picks a free one.",
        ),
    ] = -1
    credentials: Annotated[
        Path | None,
        Field(
            description="A NATS `.creds` file for the connections of the control plane and "
            "the services (must exist)."
        ),
    ] = None
    nkey_seed: Annotated[
        Path | None,
        Field(
            description="The nkey seed file a component connects with (`up` makes one per "
            "component for its embedded server)."
        ),
    ] = None
    tls_ca: Annotated[
        Path | None,
        Flag("--nats-tls-ca"),
        Field(
            description="CA (PEM) that signed the NATS server's certificate: connect over "
            "TLS (`up` with `security.tls: auto` sets the three for its embedded server)."
        ),
    ] = None
    tls_cert: Annotated[
        Path | None,
        Flag("--nats-tls-cert"),
        Field(description="Client certificate (PEM), for a NATS server that verifies clients."),
    ] = None
    tls_key: Annotated[Path | None, Flag("--nats-tls-key"), Field(description="Its key (PEM).")] = (
        None
    )
    server_config: Annotated[
        Path | None,
        Field(
            description="A nats-server config file for the embedded server (users and their "
            "permissions; `up` writes one). Only without `url`."
        ),
    ] = None
    prefix: Annotated[
        str,
        matching(
            PREFIX,
            "a valid prefix",
            "1-32 characters of a-z, 0-9 and '_', starting with a letter",
        ),
        Field(
            description="Prefix of every subject, stream and bucket, so several meshes can "
            "share one NATS: 1-32 of `a-z 0-9 _`, starting with a letter."
        ),
    ] = "mesh"
    replicas: Annotated[
        int,
        Field(
            ge=1,
            le=5,
            description="JetStream replicas of the mesh's streams and buckets (1-5). "
            "Use `3` on a 3-node cluster.",
        ),
    ] = 1

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        urls = [value] if isinstance(value, str) else value or []
        if isinstance(value, list) and not value:
            raise ValueError("give at least one URL, or leave url out for embedded NATS")
        for url in urls:
            if not NATS_URL.fullmatch(url):
                raise ValueError(
                    f"{url!r} is not a NATS URL: expected nats://HOST:PORT (or tls://, ws://)"
                )
        return value

    @model_validator(mode="after")
    def _tls_complete(self) -> NatsConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
        if self.tls_cert is not None and self.tls_ca is None:
            raise ValueError("tls_cert (mutual TLS) needs tls_ca")
        return self

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS of the connections to NATS, or None (plaintext, or what `tls://` URLs
        and the system's CAs give)."""
        if self.tls_ca is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls_ca))
        if self.tls_cert is not None and self.tls_key is not None:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context

    @property
    def embedded(self) -> bool:
        """True when `up` starts its own nats-server."""
        return self.url is None

    @property
    def urls(self) -> list[str]:
        if self.url is None:
            return []
        return [self.url] if isinstance(self.url, str) else list(self.url)
