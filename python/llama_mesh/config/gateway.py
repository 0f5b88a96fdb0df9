"""The REST/JSON gateway in front of the control plane.

GatewayConfig(port=0, cors_origins=["http://localhost:3000"])
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from llama_mesh.config.fields import Flag, Port, Settings


class GatewayConfig(Settings):
    """The REST/JSON gateway in front of the control plane."""

    enabled: Annotated[bool, Field(description="Run the REST/JSON gateway.")] = True
    host: Annotated[str, Field(description="Listen address of the HTTP server.")] = "127.0.0.1"
    port: Annotated[Port, Field(description="HTTP port; `0` picks a free one.")] = 8080
    cors_origins: Annotated[
        list[str],
        Flag("--cors-origin"),
        Field(description='Origins allowed by CORS; `"*"` for any. Empty: no CORS headers.'),
    ] = Field(default_factory=list)
    metrics: Annotated[
        bool,
        Field(
            description="Serve Prometheus metrics at `/metrics` on the gateway's port, to "
            "the callers the control plane says are `admin` (unless `security.open_metrics`)."
        ),
    ] = True
    https: Annotated[
        bool,
        Field(
            description="Serve HTTPS with the mesh's server certificate (`security.tls_cert`, "
            "or `tls: auto`'s) (deployment file only)."
        ),
    ] = False
    tls_cert: Annotated[
        Path | None,
        Field(description="Certificate (PEM) of the gateway's own listener: serve HTTPS."),
    ] = None
    tls_key: Annotated[Path | None, Field(description="Its private key (PEM).")] = None
    upstream_ca: Annotated[
        Path | None,
        Field(
            description="CA (PEM) that signed the control plane's certificate: reach it "
            "over TLS. Unset: plaintext (a control plane on loopback)."
        ),
    ] = None
    upstream_cert: Annotated[
        Path | None,
        Field(
            description="The gateway's client certificate (PEM), for a control plane "
            "that asks for mTLS."
        ),
    ] = None
    upstream_key: Annotated[Path | None, Field(description="Its private key (PEM).")] = None
    upstream_server_name: Annotated[
        str | None,
        Field(
            description="The name in the control plane's certificate, when it differs "
            "from the host the gateway dials."
        ),
    ] = None

    @model_validator(mode="after")
    def _complete(self) -> GatewayConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
        if (self.upstream_cert is None) != (self.upstream_key is None):
            raise ValueError("upstream_cert and upstream_key go together: give both, or neither")
        if self.upstream_cert is not None and self.upstream_ca is None:
            raise ValueError("upstream_cert (mTLS) needs upstream_ca")
        return self

    @property
    def upstream_tls(self) -> bool:
        return self.upstream_ca is not None
