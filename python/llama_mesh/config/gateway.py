"""The REST/JSON gateway in front of the control plane.

GatewayConfig(port=0, cors_origins=["http://localhost:3000"])
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

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
        bool, Field(description="Serve Prometheus metrics at `/metrics` on the gateway's port.")
    ] = True
