"""Blocks known to disagree with the program, each with the reason, until fixed.

Keyed by (page, a piece of the block's text that names it). A listed block that passes
fails the test, so this list only shrinks.
"""

from __future__ import annotations

KNOWN_FAILURES: dict[tuple[str, str], str] = {
    ("docs/gateway.md", "curl -sN localhost:8080/v1/$T:streamEvents"): (
        "issue 16: integers come back as doubles through the gateway (2.0), and progress "
        "events carry TASK_STATE_UNSPECIFIED instead of the task's state"
    ),
    # Written before the runner landed: fragments that need a token, an auth-enabled
    # deployment or certificate files. Make each a program that runs against a fixture,
    # or an excerpt of a file that is tested (docs/contributing.md).
    ("docs/security.md", "admin.api_keys.create"): "a fragment: top-level async with",
    ("docs/security.md", "tls = ServerTls("): "a fragment: SecuritySettings not imported",
    ("docs/security.md", "creds = Credentials("): "a fragment: token and Path not defined",
}
