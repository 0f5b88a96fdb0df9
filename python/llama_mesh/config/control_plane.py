"""Where the control plane listens, and how clients and services reach it.

ControlPlaneConfig().address            # "127.0.0.1:50051"
ControlPlaneConfig(host="0.0.0.0").address   # "127.0.0.1:50051": connect locally
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from llama_mesh.config.fields import Port, Settings
from llama_mesh.config.retention import RetentionConfig

ANY_HOST = ("0.0.0.0", "::", "")


def connect_host(host: str) -> str:
    """The address to connect to for a server that listens on `host`."""
    return "127.0.0.1" if host in ANY_HOST else host


class ControlPlaneConfig(Settings):
    """Where the control plane listens (gRPC)."""

    host: Annotated[
        str,
        Field(
            description="Listen address of the gRPC server (ControlPlane and Queue APIs, "
            "`grpc.health.v1`, reflection). `0.0.0.0` for all interfaces."
        ),
    ] = "127.0.0.1"
    port: Annotated[
        Port,
        Field(
            description="gRPC port; `0` picks a free one (commands given `--file` then find "
            "it in the run file)."
        ),
    ] = 50051

    metrics_port: Annotated[
        Port | None,
        Field(
            description="Serve Prometheus metrics at `http://HOST:PORT/metrics` (`0`: a free "
            "port, shown by `up`): HTTPS with TLS on, to admins only with authentication on. "
            "None: no metrics endpoint."
        ),
    ] = None

    retention: Annotated[
        RetentionConfig,
        Field(description="How long finished tasks and idle sessions are kept."),
    ] = Field(default_factory=RetentionConfig)

    @property
    def address(self) -> str:
        """HOST:PORT to connect to."""
        return f"{connect_host(self.host)}:{self.port}"
