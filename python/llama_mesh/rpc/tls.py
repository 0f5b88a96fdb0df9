"""TLS for gRPC servers: certificates from files, client certificates for mTLS.

tls = ServerTls(cert_file=Path("server.pem"), key_file=Path("server.key"),
                client_ca_file=Path("ca.pem"))   # client_ca_file: require mTLS
server.add_secure_port("127.0.0.1:0", tls.credentials())
context = tls.ssl_context()   # the same, for an HTTP server (the metrics endpoint)
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate and key (PEM files); with `client_ca_file`, mTLS:
    every client must present a certificate that CA signed."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def credentials(self) -> grpc.ServerCredentials:
        ca = self.client_ca_file.read_bytes() if self.client_ca_file is not None else None
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The same certificate and client check, for a server of the standard library."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=self.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context
