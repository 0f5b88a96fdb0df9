"""Blocks known to disagree with the program, each with the reason, until fixed.

Keyed by (page, a piece of the block's text that names it). A listed block that passes
fails the test, so this list only shrinks.
"""

from __future__ import annotations

KNOWN_FAILURES: dict[tuple[str, str], str] = {
    # Written before the runner landed: make each a whole program or deployment file
    # (llama-mesh check), or an excerpt of a tested file (docs/contributing.md).
    ("docs/security.md", "jwt_jwks_url: https://id.example.com"): "a security: section alone",
    ("docs/security.md", "tls_client_ca: tls/ca.pem"): "a security: section alone",
    ("docs/security.md", "creds = Credentials("): "a fragment: token and Path not defined",
    ("docs/security.md", "llama-mesh keys create --role client"): (
        "needs a deployment (doc-test: deployment) and the venv's llama-mesh; a console "
        "transcript would show what the commands print"
    ),
}
