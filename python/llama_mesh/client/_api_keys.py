"""API keys of the mesh, for admins: `client.api_keys.create(["client"])`.

async with AsyncClient(address, token=admin_token) as client:
    token, key = await client.api_keys.create(["client"], key_id="ci")
    token, key = await client.api_keys.rotate("ci", grace=3600)
    await client.api_keys.delete("ci")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from llama_mesh.core import proto_time
from llama_mesh.core.access import key_name
from llama_mesh.v1 import auth_pb2, auth_pb2_grpc

T = TypeVar("T")
Call = Callable[..., Awaitable[Any]]


class ApiKeys:
    """The Auth API's keys, through one client's channel and error mapping."""

    def __init__(self, stub: auth_pb2_grpc.AuthAPIStub, call: Call) -> None:
        self._stub = stub
        self._call = call

    async def create(
        self,
        roles: list[str],
        *,
        key_id: str = "",
        description: str = "",
        expires_in: float | None = None,
        namespace: str = "",
    ) -> tuple[str, auth_pb2.ApiKey]:
        """Issue a key; (its token, shown only now; the key). A key with a `namespace`
        sees only that namespace's sessions and tasks (unless it is admin or a service)."""
        key = auth_pb2.ApiKey(roles=roles, description=description, namespace=namespace)
        if expires_in is not None:
            key.expire_time.CopyFrom(proto_time.now())
            key.expire_time.FromNanoseconds(key.expire_time.ToNanoseconds() + int(expires_in * 1e9))
        response = await self._call(
            self._stub.CreateApiKey,
            auth_pb2.CreateApiKeyRequest(api_key=key, api_key_id=key_id),
        )
        return response.token, response.api_key

    async def get(self, key_id: str) -> auth_pb2.ApiKey:
        response = await self._call(
            self._stub.GetApiKey, auth_pb2.GetApiKeyRequest(name=key_name(key_id))
        )
        key: auth_pb2.ApiKey = response.api_key
        return key

    async def list(self) -> list[auth_pb2.ApiKey]:
        keys: list[auth_pb2.ApiKey] = []
        token = ""
        while True:
            response = await self._call(
                self._stub.ListApiKeys,
                auth_pb2.ListApiKeysRequest(page_size=1000, page_token=token),
            )
            keys.extend(response.api_keys)
            token = response.next_page_token
            if not token:
                return keys

    async def rotate(self, key_id: str, *, grace: float = 0.0) -> tuple[str, auth_pb2.ApiKey]:
        """A new secret; the old one keeps working for `grace` seconds."""
        response = await self._call(
            self._stub.RotateApiKey,
            auth_pb2.RotateApiKeyRequest(
                name=key_name(key_id), grace_period=proto_time.duration(grace)
            ),
        )
        return response.token, response.api_key

    async def delete(self, key_id: str) -> None:
        """Revoke the key: calls with it fail with UNAUTHENTICATED from now on."""
        await self._call(
            self._stub.DeleteApiKey, auth_pb2.DeleteApiKeyRequest(name=key_name(key_id))
        )

    async def whoami(self) -> auth_pb2.CallerIdentity:
        response = await self._call(
            self._stub.GetCallerIdentity, auth_pb2.GetCallerIdentityRequest()
        )
        identity: auth_pb2.CallerIdentity = response.identity
        return identity
