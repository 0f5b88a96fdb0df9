"""Authentication by the API keys the mesh issues (`lmk_…` tokens).

authenticator = ApiKeyAuthenticator(store.lookup)   # store: jetstream.api_keys
identity = await authenticator.authenticate(token)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from llama_mesh.core.access import key_name, opens, parse_token
from llama_mesh.core.errors import UnauthenticatedError
from llama_mesh.rpc.identity import Identity
from llama_mesh.v1 import auth_pb2


class ApiKeyAuthenticator:
    """Checks `lmk_` tokens against stored keys."""

    def __init__(self, lookup: Callable[[str], Awaitable[auth_pb2.StoredApiKey | None]]) -> None:
        self._lookup = lookup

    async def authenticate(self, token: str) -> Identity | None:
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        stored = await self._lookup(key_id)
        if stored is None or not opens(stored, secret, time.time()):
            raise UnauthenticatedError(
                f"API key {key_id!r} is unknown, revoked or expired, or its secret is wrong"
            )
        return Identity.of(key_name(key_id), stored.api_key.roles, stored.api_key.namespace)
