"""How the mesh's gRPC servers check their callers: authentication, TLS, JWT issuer.

    SecurityConfig()                                   # API keys of the mesh; no TLS
    SecurityConfig(tls_cert=Path("server.pem"), tls_key=Path("server.key"),
                   tls_client_ca=Path("ca.pem"))       # and mTLS
    SecurityConfig(auth=False)                         # nobody is asked (loopback only)

The deployment file's `security:` section, the security flags of `serve control-plane`
and `serve service`, and what `up` passes them come from this model. docs/security.md
explains each setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from llama_mesh.config.fields import Settings


class SecurityConfig(Settings):
    """Authentication and TLS of the mesh's gRPC servers."""

    auth: Annotated[
        bool,
        Field(
            description="Callers must present a bearer token: an API key of the mesh, or a "
            "JWT of `jwt_issuer`. Off, every caller is admin (allowed on loopback only)."
        ),
    ] = True
    install_keys: Annotated[
        Path | None,
        Field(
            description="keys.json of API keys to install at start (id, roles, SHA-256 of "
            "the secret), as `up` writes it under the state directory (control plane only)."
        ),
    ] = None
    tls: Annotated[
        Literal["auto"] | None,
        Field(
            description="`auto`: `up` makes a local CA and certificates under the state "
            "directory (kept across restarts, renewed before they expire) and gives every "
            "component mTLS with them (deployment file only; instead of tls_cert, tls_key, "
            "tls_client_ca)."
        ),
    ] = None
    tls_cert: Annotated[Path | None, Field(description="Server certificate (PEM): serve TLS.")] = (
        None
    )
    tls_key: Annotated[Path | None, Field(description="Its private key (PEM).")] = None
    tls_client_ca: Annotated[
        Path | None,
        Field(description="CA (PEM) that must have signed every client's certificate: mTLS."),
    ] = None
    jwt_issuer: Annotated[
        str | None, Field(description="Also accept JWTs of this issuer (`iss`).")
    ] = None
    jwt_audience: Annotated[str | None, Field(description="The `aud` those JWTs must carry.")] = (
        None
    )
    jwt_jwks_url: Annotated[
        str | None, Field(description="Where the issuer publishes its keys (JWKS).")
    ] = None
    jwt_roles_claim: Annotated[
        str, Field(description="The JWT claim that lists the caller's roles.")
    ] = "roles"
    jwt_refetch_interval: Annotated[
        float,
        Field(
            ge=0,
            description="Shortest time (s) between two JWKS fetches for a token whose key "
            "id the mesh has not seen (an issuer rotating its keys).",
        ),
    ] = 10.0
    open_health: Annotated[
        bool, Field(description="grpc.health.v1 answers without credentials.")
    ] = True
    open_reflection: Annotated[
        bool, Field(description="Server reflection answers without credentials.")
    ] = True
    open_metrics: Annotated[
        bool,
        Field(
            description="`/metrics` of the control plane, the replicas and the gateway "
            "answers without an admin's token (with authentication on)."
        ),
    ] = False

    @model_validator(mode="after")
    def _complete(self) -> SecurityConfig:
        if self.tls == "auto":
            given = [f for f in ("tls_cert", "tls_key", "tls_client_ca") if getattr(self, f)]
            if given:
                raise ValueError(
                    f"tls: auto makes the certificates itself: remove {', '.join(given)} "
                    "(or remove `tls: auto` to use your own files)"
                )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mTLS) needs tls_cert and tls_key")
        jwt = (self.jwt_issuer, self.jwt_audience, self.jwt_jwks_url)
        if any(jwt) and not all(jwt):
            raise ValueError("jwt_issuer, jwt_audience and jwt_jwks_url go together")
        return self

    @property
    def serves_tls(self) -> bool:
        """TLS from files, or (`up`) from the local CA it makes."""
        return self.tls_cert is not None or self.tls == "auto"


NO_AUTH = SecurityConfig(auth=False)
