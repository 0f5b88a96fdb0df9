"""API keys from the blocking client, as README's readers use it: the same calls as
AsyncClient's `api_keys` (test_attacks.py has what a revoked or refused key cannot do)."""

from __future__ import annotations

import asyncio

from llama_mesh.client import Client, Credentials

from .conftest import SecureMesh


async def test_the_blocking_client_creates_rotates_and_deletes_keys(
    secure_mesh: SecureMesh,
) -> None:
    def manage() -> tuple[list[str], str, list[str]]:
        admin = Credentials(token=secure_mesh.tokens["admin"])
        with Client(secure_mesh.control_plane, credentials=admin) as client:
            token, _ = client.api_keys.create(["client"], key_id="sync")
            with Client(secure_mesh.control_plane, credentials=Credentials(token=token)) as it:
                subject = it.api_keys.whoami().subject
            client.api_keys.rotate("sync", grace=60)
            roles = list(client.api_keys.get("sync").roles)
            client.api_keys.delete("sync")
            return roles, subject, [k.name for k in client.api_keys.list()]

    roles, subject, left = await asyncio.to_thread(manage)
    assert (roles, subject) == (["client"], "apiKeys/sync")
    assert "apiKeys/sync" not in left and "apiKeys/admin" in left
