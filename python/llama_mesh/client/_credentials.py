"""What a client presents to the mesh: a bearer token, and TLS settings.

    creds = Credentials(token="lmk_ci_…", ca_file=Path("ca.pem"))
    async with AsyncClient("mesh.example.com:50051", credentials=creds) as client: ...

Without explicit credentials the client reads them from the environment:

    LLAMA_MESH_TOKEN        the bearer token (an API key or a JWT)
    LLAMA_MESH_TOKEN_FILE   a file holding it (e.g. the admin token `up` writes)
    LLAMA_MESH_CA_FILE      PEM of the CA that signed the server's certificate: use TLS
    LLAMA_MESH_CERT_FILE    client certificate (PEM), for mTLS
    LLAMA_MESH_KEY_FILE     its private key (PEM)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc

from llama_mesh.telemetry import tracing

TOKEN_ENV = "LLAMA_MESH_TOKEN"
TOKEN_FILE_ENV = "LLAMA_MESH_TOKEN_FILE"
CA_FILE_ENV = "LLAMA_MESH_CA_FILE"
CERT_FILE_ENV = "LLAMA_MESH_CERT_FILE"
KEY_FILE_ENV = "LLAMA_MESH_KEY_FILE"


def read_token_file(path: Path) -> str:
    """The token in `path` (surrounding whitespace dropped)."""
    return path.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class Credentials:
    """A bearer token and how to reach the server (TLS when a CA or `tls` is given)."""

    token: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        env = os.environ if environ is None else environ
        token = env.get(TOKEN_ENV) or None
        if token is None and env.get(TOKEN_FILE_ENV):
            token = read_token_file(Path(env[TOKEN_FILE_ENV]))

        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        return cls(
            token=token,
            ca_file=path(CA_FILE_ENV),
            cert_file=path(CERT_FILE_ENV),
            key_file=path(KEY_FILE_ENV),
        )

    def with_token(self, token: str | None) -> Credentials:
        return self if token is None else replace(self, token=token)

    def with_tls(self, ca_file: Path, cert_file: Path, key_file: Path) -> Credentials:
        """These, over mTLS: the server's CA, and the client's certificate and key."""
        return replace(self, ca_file=ca_file, cert_file=cert_file, key_file=key_file)

    @property
    def secure(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")] if self.token else []

    def channel_credentials(self) -> grpc.ChannelCredentials:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both a client certificate and its key, or neither")
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes() if self.ca_file else None,
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )

    def channel(self, address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
        """A channel to `address`: TLS when asked, plaintext otherwise. The token is
        sent as call metadata (metadata()), which also works on plaintext loopback.
        When this process traces, each call carries the current trace context."""
        interceptors = tracing.client_interceptors()
        if self.secure:
            return grpc.aio.secure_channel(
                address, self.channel_credentials(), options=options, interceptors=interceptors
            )
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
