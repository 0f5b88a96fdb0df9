"""Blocks known to disagree with the program, each with the reason, until fixed.

Keyed by (page, a piece of the block's text that names it). A listed block that passes
fails the test, so this list only shrinks.
"""

from __future__ import annotations

KNOWN_FAILURES: dict[tuple[str, str], str] = {}
