"""Pagination of List RPCs: page sizes and opaque page tokens, in one place."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Generic, TypeVar

from llama_mesh.core.errors import InvalidArgumentError

M = TypeVar("M")

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50


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


def paginate(
    items: list[tuple[str, M]], size: int, token: str, *, descending: bool = False
) -> Page[M]:
    """One page of `items` (sorted by key) after the key in `token`."""
    after = decode_page_token(token)
    ordered = sorted(items, key=lambda kv: kv[0], reverse=descending)
    if after:
        ordered = [kv for kv in ordered if (kv[0] < after if descending else kv[0] > after)]
    page = ordered[:size]
    next_token = encode_page_token(page[-1][0]) if len(ordered) > size else ""
    return Page([m for _, m in page], next_token)
