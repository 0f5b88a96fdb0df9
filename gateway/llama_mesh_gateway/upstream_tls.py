"""How the gateway reaches an upstream that serves TLS (and asks for mTLS).

    tls = UpstreamTls(ca_file=Path("ca.pem"))                      # TLS
    tls = UpstreamTls(ca_file=Path("ca.pem"), cert_file=Path("gw.pem"),
                      key_file=Path("gw.key"))                     # and mTLS
    GatewayServer("control-plane:50051", upstream_tls=tls)

The gateway forwards its callers' credentials and never adds its own: the client
certificate here proves the gateway to an upstream that asks for mTLS, not a caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc


class UpstreamTlsError(ValueError):
    """The upstream TLS settings are incomplete or a file cannot be read."""


@dataclass(frozen=True)
class UpstreamTls:
    """The CA that signed the upstream's certificate, and the gateway's own for mTLS."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # The name the upstream's certificate carries, when it differs from the host the
    # gateway dials (an IP address, or a Service name the certificate does not list).
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise UpstreamTlsError("--upstream-cert and --upstream-key go together")

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials from the files (read now: a missing file fails at start)."""

        def read(path: Path | None, flag: str) -> bytes | None:
            if path is None:
                return None
            try:
                return path.read_bytes()
            except OSError as e:
                raise UpstreamTlsError(f"{flag} {path}: {e.strerror}") from None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_file, "--upstream-ca"),
            private_key=read(self.key_file, "--upstream-key"),
            certificate_chain=read(self.cert_file, "--upstream-cert"),
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        if self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []
