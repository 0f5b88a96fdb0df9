"""The Auth API: issue, list, rotate and revoke API keys; tell callers who they are."""

from __future__ import annotations

import grpc

from llama_mesh.core import proto_time
from llama_mesh.core.access import check_key_id, parse_key_name
from llama_mesh.core.errors import AlreadyExistsError, InvalidArgumentError
from llama_mesh.core.names import new_id
from llama_mesh.core.paging import page_size, paginate
from llama_mesh.jetstream.api_keys import ApiKeyStore
from llama_mesh.rpc.identity import caller
from llama_mesh.v1 import auth_pb2, auth_pb2_grpc


class AuthAPIServicer(auth_pb2_grpc.AuthAPIServicer):
    """The AuthAPI servicer (its RPCs are admin-only in the policy table, but
    GetCallerIdentity)."""

    def __init__(self, keys: ApiKeyStore) -> None:
        self.keys = keys

    async def CreateApiKey(
        self,
        request: auth_pb2.CreateApiKeyRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.CreateApiKeyRequest, auth_pb2.CreateApiKeyResponse
        ],
    ) -> auth_pb2.CreateApiKeyResponse:
        key_id = check_key_id(request.api_key_id) if request.api_key_id else new_id()[:16]
        made = await self.keys.create(key_id, request.api_key)
        if made is None:
            raise AlreadyExistsError(f"API key 'apiKeys/{key_id}' exists already")
        token, key = made
        return auth_pb2.CreateApiKeyResponse(api_key=key, token=token)

    async def GetApiKey(
        self,
        request: auth_pb2.GetApiKeyRequest,
        context: grpc.aio.ServicerContext[auth_pb2.GetApiKeyRequest, auth_pb2.GetApiKeyResponse],
    ) -> auth_pb2.GetApiKeyResponse:
        return auth_pb2.GetApiKeyResponse(api_key=await self.keys.get(parse_key_name(request.name)))

    async def ListApiKeys(
        self,
        request: auth_pb2.ListApiKeysRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.ListApiKeysRequest, auth_pb2.ListApiKeysResponse
        ],
    ) -> auth_pb2.ListApiKeysResponse:
        size = page_size(request.page_size)
        page = paginate(await self.keys.list(), size, request.page_token, listing="apiKeys")
        return auth_pb2.ListApiKeysResponse(
            api_keys=page.items, next_page_token=page.next_page_token
        )

    async def RotateApiKey(
        self,
        request: auth_pb2.RotateApiKeyRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.RotateApiKeyRequest, auth_pb2.RotateApiKeyResponse
        ],
    ) -> auth_pb2.RotateApiKeyResponse:
        key_id = parse_key_name(request.name)
        grace = proto_time.seconds(request.grace_period)
        if grace < 0:
            raise InvalidArgumentError("grace_period must not be negative")
        token, key = await self.keys.rotate(key_id, grace)
        return auth_pb2.RotateApiKeyResponse(api_key=key, token=token)

    async def DeleteApiKey(
        self,
        request: auth_pb2.DeleteApiKeyRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.DeleteApiKeyRequest, auth_pb2.DeleteApiKeyResponse
        ],
    ) -> auth_pb2.DeleteApiKeyResponse:
        await self.keys.delete(parse_key_name(request.name))
        return auth_pb2.DeleteApiKeyResponse()

    async def GetCallerIdentity(
        self,
        request: auth_pb2.GetCallerIdentityRequest,
        context: grpc.aio.ServicerContext[
            auth_pb2.GetCallerIdentityRequest, auth_pb2.GetCallerIdentityResponse
        ],
    ) -> auth_pb2.GetCallerIdentityResponse:
        who = caller()
        return auth_pb2.GetCallerIdentityResponse(
            identity=auth_pb2.CallerIdentity(
                subject=who.subject, roles=sorted(who.roles), namespace=who.namespace
            )
        )
