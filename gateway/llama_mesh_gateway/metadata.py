"""HTTP headers <-> gRPC metadata, as grpc-gateway maps them.

Request headers to metadata:

- `Authorization` is passed through as `authorization`;
- `Grpc-Metadata-<Key>: v` becomes `<key>: v` (a `-bin` key takes base64 and is sent
  as bytes);
- `Grpc-Timeout` (gRPC's format: `10S`, `250m`, `1H`, ...) becomes the call deadline;
- the client address is appended to `X-Forwarded-For` and sent as `x-forwarded-for`,
  the `Host` as `x-forwarded-host`.

Response metadata to headers: initial metadata as `Grpc-Metadata-<key>`, trailing
metadata as `Grpc-Trailer-<key>` (binary values base64-encoded).

>>> parse_grpc_timeout("250m")
0.25
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence

from llama_mesh_gateway.status import STATUS_DETAILS_KEY, invalid_argument

METADATA_PREFIX = "grpc-metadata-"
_TIMEOUT = re.compile(r"^([0-9]{1,8})([HMSmun])$")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_KEY = re.compile(r"^[0-9a-z_.-]+$")
# Keys gRPC or HTTP/2 own; a client may not set them through Grpc-Metadata-*.
_RESERVED = frozenset({"content-type", "te", "user-agent", "grpc-timeout", "grpc-encoding"})

Metadata = list[tuple[str, str | bytes]]


def parse_grpc_timeout(value: str) -> float:
    """Seconds of a `Grpc-Timeout` header; GatewayError (400) if malformed."""
    m = _TIMEOUT.match(value.strip())
    if m is None:
        raise invalid_argument(
            f"Grpc-Timeout {value!r} is malformed: expected up to 8 digits and a unit "
            "(H, M, S, m, u, n), e.g. 10S"
        )
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def request_metadata(
    headers: Sequence[tuple[bytes, bytes]], client: tuple[str, int] | None
) -> tuple[Metadata, float | None]:
    """The outgoing metadata and the timeout (seconds or None) of request headers."""
    md: Metadata = []
    timeout: float | None = None
    forwarded_for: str | None = None
    host: str | None = None
    for raw_key, raw_value in headers:
        key = raw_key.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if key == "authorization":
            md.append(("authorization", value))
        elif key == "grpc-timeout":
            timeout = parse_grpc_timeout(value)
        elif key == "x-forwarded-for":
            forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
        elif key == "host":
            host = value
        elif key.startswith(METADATA_PREFIX):
            name = key[len(METADATA_PREFIX) :]
            if not _KEY.match(name) or name in _RESERVED or name.startswith("grpc-"):
                raise invalid_argument(
                    f"header {raw_key.decode('latin-1')} is not a valid metadata key"
                )
            if name.endswith("-bin"):
                try:
                    md.append(
                        (name, base64.b64decode(value + "=" * (-len(value) % 4), validate=True))
                    )
                except (binascii.Error, ValueError):
                    raise invalid_argument(f"header {key}: value is not base64") from None
            else:
                md.append((name, value))
    if client is not None:
        ip = client[0]
        forwarded_for = ip if forwarded_for is None else f"{forwarded_for}, {ip}"
    if forwarded_for is not None:
        md.append(("x-forwarded-for", forwarded_for))
    if host is not None:
        md.append(("x-forwarded-host", host))
    return md, timeout


def response_headers(
    initial: Iterable[tuple[str, str | bytes]] | None,
    trailing: Iterable[tuple[str, str | bytes]] | None = None,
) -> dict[str, str]:
    """HTTP headers for response metadata."""
    out: dict[str, str] = {}
    for prefix, items in (("Grpc-Metadata-", initial), ("Grpc-Trailer-", trailing)):
        for key, value in items or ():
            if key == STATUS_DETAILS_KEY or key.startswith(":"):
                continue
            text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
            header = prefix + key
            out[header] = f"{out[header]}, {text}" if header in out else text
    return out
