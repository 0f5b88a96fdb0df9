"""The API keys `up` makes for a deployment: an admin token for its operator, and one
token per service for its replicas.

Secrets live in files readable by their owner only (0600) under the state directory;
the control plane gets only their SHA-256 (`keys.json`), which it installs in the
mesh's key bucket at start. A second `up` keeps the tokens it finds.

    keys = DeploymentKeys.ensure(state_dir / "auth", ["echo", "counter"])
    keys.admin_token_file          # .llama-mesh/auth/admin.token
    keys.service_token_file("echo")
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from llama_mesh.core.access import ADMIN, CLIENT, digest, new_secret, parse_token, service_role
from llama_mesh.launch.certificates import write_private

ADMIN_KEY = "admin"


def service_key_id(service_id: str) -> str:
    return f"service-{service_id}"


@dataclass(frozen=True)
class DeploymentKeys:
    """Where a deployment's generated tokens are."""

    directory: Path

    @property
    def admin_token_file(self) -> Path:
        return self.directory / "admin.token"

    @property
    def install_file(self) -> Path:
        """(key id, roles, SHA-256) of every generated key: what the control plane installs."""
        return self.directory / "keys.json"

    def service_token_file(self, service_id: str) -> Path:
        return self.directory / "services" / f"{service_id}.token"

    @classmethod
    def ensure(cls, directory: Path, services: Iterable[str]) -> DeploymentKeys:
        keys = cls(directory)
        wanted = [(ADMIN_KEY, [ADMIN], keys.admin_token_file)] + [
            # `client` too: a service's workflows run nested workflows and tools.
            (service_key_id(s), [service_role(s), CLIENT], keys.service_token_file(s))
            for s in services
        ]
        installed = []
        for key_id, roles, path in wanted:
            token = _read(path)
            parsed = parse_token(token) if token else None
            if parsed is None or parsed[0] != key_id:
                token, _ = new_secret(key_id)
                write_private(path, (token + "\n").encode())
                parsed = parse_token(token)
                assert parsed is not None
            installed.append({"id": key_id, "roles": roles, "sha256": digest(parsed[1])})
        write_private(keys.install_file, (json.dumps(installed, indent=2) + "\n").encode())
        return keys


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def load_install_file(path: Path) -> list[tuple[str, list[str], str]]:
    """The keys of a `keys.json`, as ControlPlaneServer.start's `install_keys`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [(str(k["id"]), [str(r) for r in k["roles"]], str(k["sha256"])) for k in data]
