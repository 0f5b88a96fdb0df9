"""Authentication and authorization of every call, in one server interceptor.

For each call: read the bearer token from the `authorization` metadata, derive the
caller's identity from it (the first authenticator that knows the token's kind
decides), check the policy table (policy.py), and make the identity the servicer's
`caller()`. No token or a bad one: UNAUTHENTICATED. Roles that do not allow the
call: PERMISSION_DENIED. The gateway maps them to 401 and 403.

    server = grpc.aio.server(interceptors=[AuthInterceptor(Authenticators([keys, jwt]))])
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import grpc

from llama_mesh.core.errors import MeshError, UnauthenticatedError
from llama_mesh.rpc import handlers
from llama_mesh.rpc.handlers import Context, Handler
from llama_mesh.rpc.identity import Identity, set_caller
from llama_mesh.rpc.policy import HEALTH_METHODS, POLICY, REFLECTION_METHODS, Rule

logger = logging.getLogger(__name__)

_BEARER = "bearer "


class Authenticator(Protocol):
    """Turns a bearer token into an identity.

    Returns None for a token of a kind it does not handle (another authenticator
    may); raises UnauthenticatedError for a token of its kind that is not valid.
    """

    async def authenticate(self, token: str) -> Identity | None: ...


class Authenticators:
    """Several authenticators, asked in order."""

    def __init__(self, authenticators: Iterable[Authenticator]) -> None:
        self.authenticators = list(authenticators)

    async def authenticate(self, token: str) -> Identity | None:
        for authenticator in self.authenticators:
            identity = await authenticator.authenticate(token)
            if identity is not None:
                return identity
        return None


def bearer_token(metadata: Sequence[Any] | None) -> str | None:
    """The token of an `authorization: Bearer <token>` metadata entry, if any."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            if text[: len(_BEARER)].lower() == _BEARER:
                return text[len(_BEARER) :].strip() or None
            return None
    return None


async def identify(authenticator: Authenticator, metadata: Sequence[Any] | None) -> Identity:
    """The caller that `metadata`'s bearer token names; UnauthenticatedError without
    one, or for a token no authenticator accepts (the metrics endpoints ask the same)."""
    token = bearer_token(metadata)
    if token is None:
        raise UnauthenticatedError(
            "this call needs credentials: send 'authorization: Bearer <token>' "
            "(an API key of the mesh or a JWT of its issuer)"
        )
    identity = await authenticator.authenticate(token)
    if identity is None:
        raise UnauthenticatedError("the bearer token is neither an API key nor a JWT")
    return identity


def _denied(handler: Handler, code: grpc.StatusCode, message: str) -> Handler:
    """A handler of the same shape as `handler` that fails the call with `code`."""

    async def unary(request: Any, context: Context) -> Any:
        await context.abort(code, message)

    async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
        await context.abort(code, message)
        yield  # pragma: no cover (abort raises)

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary)
    return grpc.stream_stream_rpc_method_handler(stream)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates each call and checks it against the policy table."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        open_health: bool = True,
        open_reflection: bool = True,
        policy: dict[str, Rule] | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.policy = POLICY if policy is None else policy
        self.open = (HEALTH_METHODS if open_health else frozenset()) | (
            REFLECTION_METHODS if open_reflection else frozenset()
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in self.open:
            return handler
        try:
            identity = await identify(self.authenticator, handler_call_details.invocation_metadata)
        except MeshError as err:
            return _denied(handler, err.code, err.message)
        rule = self.policy.get(method)
        if rule is None:
            logger.error("%s has no access policy: denied", method)
            return _denied(
                handler, grpc.StatusCode.PERMISSION_DENIED, f"{method} has no access policy"
            )
        if not rule.admits(identity):
            logger.info(
                "%s: %s denied (roles %s)", method, identity.subject, sorted(identity.roles)
            )
            return _denied(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"{identity.subject} may not call {method}: it needs one of the roles "
                f"{rule.describe_roles()} (it has {sorted(identity.roles)})",
            )
        return _as_caller(handler, identity, rule, method)


def _as_caller(handler: Handler, identity: Identity, rule: Rule, method: str) -> Handler:
    """`handler`, run as `identity` once its request passes the rule's owner check."""

    async def admit(request: Any, context: Context) -> None:
        set_caller(identity)
        if rule.owner is not None:
            try:
                rule.check(identity, method, request)
            except MeshError as err:
                await context.abort(err.code, err.message)

    return handlers.before(handler, admit)
