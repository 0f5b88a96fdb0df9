"""Pagination of List RPCs: page sizes, opaque page tokens and the byte bound of a
reply, in one place.

A reply holds at most `page_size` items and at most MAX_PAGE_BYTES: a page of large
tasks is cut short (with a next_page_token), never refused. A page may also hold
fewer items than asked while more follow (a listing reads a bounded amount per call);
only an empty next_page_token means the end.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

from llama_mesh.core.errors import InvalidArgumentError

M = TypeVar("M", bound=Message)

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_BYTES = 3 << 20
"""Bytes of items in one reply: under gRPC's default 4 MiB message limit."""


@dataclass
class Page(Generic[M]):
    items: list[M]
    next_page_token: str


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgumentError(f"page_size must not be negative (got {requested})")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(last_key: str) -> str:
    return base64.urlsafe_b64encode(last_key.encode()).decode()


def decode_page_token(token: str) -> str:
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgumentError(
            "page_token is not valid: pass the next_page_token of the previous page"
        ) from None


def fitting(sizes: Sequence[int], limit: int = MAX_PAGE_BYTES) -> int:
    """How many of the items (their serialized sizes, in order) fit in one reply:
    at least one, so that a listing always moves on."""
    total = 0
    for count, size in enumerate(sizes):
        total += size
        if total > limit:
            return max(count, 1)
    return len(sizes)


def paginate(
    items: list[tuple[str, M]],
    size: int,
    token: str,
    *,
    listing: str,
    descending: bool = False,
) -> Page[M]:
    """One page of `items` (sorted by key) after the key in `token`, a token of this
    `listing` (its name is in the token: one from another listing, or made up, was
    taken as a position in this one, and its page silently wrong)."""
    after = decode_page_token(token)
    if after:
        prefix = f"{listing}:"
        if not after.startswith(prefix):
            raise InvalidArgumentError(
                "page_token is not valid: pass the next_page_token of the previous page "
                f"of this listing ({listing})"
            )
        after = after.removeprefix(prefix)
    ordered = sorted(items, key=lambda kv: kv[0], reverse=descending)
    if after:
        ordered = [kv for kv in ordered if (kv[0] < after if descending else kv[0] > after)]
    page = ordered[:size]
    page = page[: fitting([m.ByteSize() for _, m in page])]
    last = f"{listing}:{page[-1][0]}" if page else ""
    next_token = encode_page_token(last) if len(ordered) > len(page) else ""
    return Page([m for _, m in page], next_token)
