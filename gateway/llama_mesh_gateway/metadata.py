"""HTTP headers <-> gRPC metadata, as grpc-gateway maps them.

Request headers to metadata:

- `Authorization` is passed through as `authorization` (the caller's credentials; the
  gateway never adds its own);
- `Grpc-Metadata-<Key>: v` becomes `<key>: v` (a `-bin` key takes base64 and is sent
  as bytes);
- `Grpc-Timeout` (gRPC's format: `10S`, `250m`, `1H`, ...) becomes the call deadline;
- the client address is appended to `X-Forwarded-For` and sent as `x-forwarded-for`,
  the `Host` as `x-forwarded-host`.

Every value forwarded as text must be printable ASCII (0x20-0x7E), the only bytes gRPC
metadata carries; anything else is a 400 naming the header (binary goes through a
`Grpc-Metadata-*-bin` header in base64). The forwarded metadata is limited to
`MAX_METADATA_BYTES` (431 above it), so it never overflows the upstream's 8 KiB
header limit. Values are never echoed back: they may be credentials.

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

import grpc

from llama_mesh_gateway.status import STATUS_DETAILS_KEY, GatewayError, invalid_argument

METADATA_PREFIX = "grpc-metadata-"
#: The longest deadline a `Grpc-Timeout` may ask for; leave the header out for none.
MAX_TIMEOUT_SECONDS = 24 * 3600.0
#: Forwarded metadata, counted as gRPC does (name + value + 32 per entry). gRPC
#: servers refuse calls whose headers exceed 8 KiB by default; the rest is for the
#: headers gRPC adds itself (`:path`, `te`, `user-agent`, ...).
MAX_METADATA_BYTES = 7 * 1024
_TIMEOUT = re.compile(rb"([0-9]{1,8})([HMSmun])")
_UNIT_SECONDS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
_KEY = re.compile(r"^[0-9a-z_.-]+$")
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
# Keys gRPC or HTTP/2 own; a client may not set them through Grpc-Metadata-*.
_RESERVED = frozenset({"content-type", "te", "user-agent", "grpc-timeout", "grpc-encoding"})
_ENTRY_OVERHEAD = 32  # RFC 7541 section 4.1, which gRPC's limit follows
_HEADER_OF = {
    "authorization": "Authorization",
    "x-forwarded-for": "X-Forwarded-For",
    "x-forwarded-host": "Host",
}

Metadata = list[tuple[str, str | bytes]]


def header_name(key: str) -> str:
    """A lower-case header name as people write it: `grpc-metadata-x` -> `Grpc-Metadata-X`."""
    return "-".join(part[:1].upper() + part[1:] for part in key.split("-"))


def parse_grpc_timeout(value: str | bytes) -> float:
    """Seconds of a `Grpc-Timeout` header; GatewayError (400) if malformed or absurd."""
    raw = value.encode("latin-1") if isinstance(value, str) else value
    m = _TIMEOUT.fullmatch(raw.strip())
    if m is None:
        raise invalid_argument(
            "header Grpc-Timeout is malformed: expected 1 to 8 digits and a unit "
            "(H, M, S, m, u, n), e.g. 10S"
        )
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds <= 0:
        raise invalid_argument("header Grpc-Timeout must be positive, e.g. 10S")
    if seconds > MAX_TIMEOUT_SECONDS:
        raise invalid_argument(
            f"header Grpc-Timeout is longer than {MAX_TIMEOUT_SECONDS / 3600:g}H: "
            "leave it out for a call without a deadline"
        )
    return seconds


def _text(raw_key: bytes, raw_value: bytes) -> str:
    """A header value that gRPC metadata can carry as text, or a 400 naming the header."""
    if not _PRINTABLE.fullmatch(raw_value):
        name = header_name(raw_key.decode("latin-1").lower())
        raise invalid_argument(
            f"header {name} has a byte that gRPC metadata cannot carry: only printable "
            "ASCII (0x20-0x7E) is allowed; send binary values base64-encoded in a "
            "Grpc-Metadata-*-bin header"
        )
    return raw_value.decode("ascii")


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
        if key == "authorization":
            md.append(("authorization", _text(raw_key, raw_value)))
        elif key == "grpc-timeout":
            timeout = parse_grpc_timeout(raw_value)
        elif key == "x-forwarded-for":
            value = _text(raw_key, raw_value)
            forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
        elif key == "host":
            host = _text(raw_key, raw_value)
        elif key.startswith(METADATA_PREFIX):
            md.append(_custom(key, raw_key, raw_value))
    if client is not None:
        ip = client[0]
        forwarded_for = ip if forwarded_for is None else f"{forwarded_for}, {ip}"
    if forwarded_for is not None:
        md.append(("x-forwarded-for", forwarded_for))
    if host is not None:
        md.append(("x-forwarded-host", host))
    _check_size(md)
    return md, timeout


def _custom(key: str, raw_key: bytes, raw_value: bytes) -> tuple[str, str | bytes]:
    """The metadata entry of a `Grpc-Metadata-<key>` header."""
    name = key[len(METADATA_PREFIX) :]
    if not _KEY.match(name) or name in _RESERVED or name.startswith("grpc-"):
        raise invalid_argument(f"header {header_name(key)} is not a valid metadata key")
    value = _text(raw_key, raw_value)
    if not name.endswith("-bin"):
        return name, value
    try:
        return name, base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument(f"header {header_name(key)}: value is not base64") from None


def _check_size(md: Metadata) -> None:
    sizes = [len(k) + len(v) + _ENTRY_OVERHEAD for k, v in md]
    if sum(sizes) <= MAX_METADATA_BYTES:
        return
    key = md[max(range(len(md)), key=sizes.__getitem__)][0]
    header = _HEADER_OF.get(key) or header_name(METADATA_PREFIX + key)
    raise GatewayError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"request headers forwarded as gRPC metadata exceed {MAX_METADATA_BYTES} bytes "
        f"(the largest is {header})",
        http=431,
    )


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
