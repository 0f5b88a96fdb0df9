"""Who may read `GET /metrics`: an upstream RPC decides, as the upstream does for every route.

    access = MetricsAccess.parse(
        "/llama_mesh.v1.AuthAPI/GetCallerIdentity", require="identity.roles=admin"
    )
    app = create_app("127.0.0.1:50051", metrics=True, metrics_access=access)

For a scrape, the gateway calls `method` (unary, in its descriptor set) with an empty
request and the scrape's credentials, forwarded as for any route (`Authorization`, never
one of the gateway's own). The upstream's UNAUTHENTICATED is a 401 (with
`WWW-Authenticate: Bearer`), PERMISSION_DENIED a 403, and an answer whose field `require`
names (a dotted path; a repeated field must hold the value) does not hold the value a
403 too. An upstream that cannot be reached, or that fails otherwise, is a 503 that
says so: the gateway cannot tell who the caller is.

An admitted credential is remembered for `cache_seconds` (keyed by its SHA-256, at most
`cache_size` of them, least recently used dropped first), so a scrape every 15 s costs at
most one call. Refusals and failures are never remembered: a revoked credential stops
working at most `cache_seconds` after the upstream stops accepting it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool

from llama_mesh_gateway.metadata import Metadata
from llama_mesh_gateway.status import GatewayError

logger = logging.getLogger(__name__)

DEFAULT_CACHE_SECONDS = 5.0
DEFAULT_CACHE_SIZE = 1024
#: How long a scrape waits for the upstream's answer.
CHECK_TIMEOUT_SECONDS = 5.0

_REFUSED_HTTP = {grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403}


@dataclass(frozen=True)
class MetricsAccess:
    """The upstream RPC that decides who may read /metrics, and what its answer must hold.

    `method` is `/package.Service/Method`; `require` is a field path of its response and
    the value it must hold, or None: the call succeeding is enough. `clock` (monotonic
    seconds) is for tests.
    """

    method: str
    require: tuple[str, str] | None = None
    cache_seconds: float = DEFAULT_CACHE_SECONDS
    cache_size: int = DEFAULT_CACHE_SIZE
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def parse(
        cls,
        method: str,
        require: str | None = None,
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
    ) -> MetricsAccess:
        """From the command line's strings: `require` is `field.path=value`."""
        condition = None
        if require is not None:
            path, sep, value = require.partition("=")
            if not sep or not path or not value:
                raise ValueError(f"{require!r} is not FIELD=VALUE, e.g. identity.roles=admin")
            condition = (path, value)
        if cache_seconds < 0:
            raise ValueError("the cache lifetime must not be negative")
        return cls(method, condition, cache_seconds)


class MetricsGuard:
    """Checks scrapes against a MetricsAccess, with the upstream channel of the gateway."""

    def __init__(self, access: MetricsAccess, pool: DescriptorPool) -> None:
        self.access = access
        service, sep, name = access.method.removeprefix("/").rpartition("/")
        if not sep or not service or not name:
            raise ValueError(f"{access.method!r} is not a gRPC method: /package.Service/Method")
        try:
            desc = pool.FindServiceByName(service).methods_by_name[name]
        except KeyError:
            raise ValueError(f"{access.method} is not in the descriptor set") from None
        if desc.client_streaming or desc.server_streaming:
            raise ValueError(f"{access.method} is streaming: /metrics needs a unary RPC")
        self._path = f"/{service}/{name}"
        self._request: type[message.Message] = message_factory.GetMessageClass(desc.input_type)
        self._response: type[message.Message] = message_factory.GetMessageClass(desc.output_type)
        if access.require is not None:
            _check_path(desc.output_type, access.require[0], access.method)
        self._admitted: OrderedDict[bytes, float] = OrderedDict()

    async def check(self, channel: grpc.aio.Channel, md: Metadata) -> None:
        """Return if the caller of `md` (the scrape's forwarded metadata) may read
        /metrics; else raise the GatewayError to answer."""
        authorization = next((v for k, v in md if k == "authorization"), "")
        key = hashlib.sha256(str(authorization).encode()).digest()
        now = self.access.clock()
        expiry = self._admitted.get(key)
        if expiry is not None:
            if now < expiry:
                self._admitted.move_to_end(key)
                return
            del self._admitted[key]
        response = await self._ask(channel, md)
        if self.access.require is not None:
            path, wanted = self.access.require
            held = _values(response, path)
            if wanted not in held:
                raise GatewayError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"/metrics is only for a caller whose {path} holds {wanted!r} "
                    f"(this one's: {held})",
                )
        if self.access.cache_seconds > 0:
            self._admitted[key] = now + self.access.cache_seconds
            self._admitted.move_to_end(key)
            while len(self._admitted) > self.access.cache_size:
                self._admitted.popitem(last=False)

    async def _ask(self, channel: grpc.aio.Channel, md: Metadata) -> message.Message:
        call = channel.unary_unary(
            self._path,
            request_serializer=_serialize,
            response_deserializer=self._response.FromString,
        )
        try:
            response: message.Message = await call(
                self._request(), metadata=md, timeout=CHECK_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code in _REFUSED_HTTP:
                unauthenticated = code == grpc.StatusCode.UNAUTHENTICATED
                headers = {"www-authenticate": "Bearer"} if unauthenticated else None
                raise GatewayError(
                    code,
                    f"/metrics: {e.details() or code.name}",
                    http=_REFUSED_HTTP[code],
                    headers=headers,
                ) from None
            logger.warning("%s failed, /metrics refused: %s %s", self._path, code, e.details())
            raise GatewayError(
                grpc.StatusCode.UNAVAILABLE,
                f"/metrics: the upstream could not tell who the caller is ({self._path}: "
                f"{code.name}: {e.details()}); try again later",
                http=503,
            ) from None
        return response


def _serialize(msg: message.Message) -> bytes:
    return msg.SerializeToString()


def _check_path(desc: Descriptor, path: str, method: str) -> None:
    """ValueError unless `path` names a field of `desc` that holds values (repeated or
    not), through single message fields."""
    *parents, leaf = path.split(".")
    for part in parents:
        fd = desc.fields_by_name.get(part)
        if fd is None or fd.message_type is None or fd.is_repeated:
            raise ValueError(f"{part} in {path} is not a message field of {method}'s response")
        desc = fd.message_type
    fd = desc.fields_by_name.get(leaf)
    if fd is None or fd.type == FieldDescriptor.TYPE_MESSAGE:
        raise ValueError(f"{path} is not a value field of {method}'s response")


def _values(msg: message.Message, path: str) -> list[str]:
    """The values (as text) the field at `path` holds: one, or a repeated field's."""
    *parents, leaf = path.split(".")
    for part in parents:
        msg = getattr(msg, part)
    value: Any = getattr(msg, leaf)
    fd = msg.DESCRIPTOR.fields_by_name[leaf]
    return [str(v) for v in value] if fd.is_repeated else [str(value)]
