"""A JWT issuer for tests: signing keys, and its JWKS served over real HTTP.

async with serving_issuer() as issuer:
    issuer.add_key("k1")
    token = issuer.token("k1", roles=["admin"])
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

AUDIENCE = "llama-mesh"


@dataclass
class Issuer:
    """A JWT issuer: signing keys by key id, and its JWKS endpoint's hits."""

    url: str = ""
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    fetches: int = 0

    def add_key(self, kid: str, *, publish: bool = True) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def token(self, kid: str, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
        return jwt.encode(
            {**body, **claims}, self.keys[kid], algorithm="RS256", headers={"kid": kid}
        )


@contextlib.asynccontextmanager
async def serving_issuer() -> AsyncIterator[Issuer]:
    """An issuer whose JWKS is served on a free port until the block ends."""
    found = Issuer()

    async def jwks(request: Request) -> JSONResponse:
        found.fetches += 1
        return JSONResponse(found.jwks())

    app = Starlette(routes=[Route("/.well-known/jwks.json", jwks)])
    # The socket listens before uvicorn starts: a request made at once waits in the
    # backlog instead of failing, so nothing needs to wait for readiness.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    found.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield found
    finally:
        server.should_exit = True
        await serving
        sock.close()
