"""What authentication costs per call: the same unary RPC with the auth interceptor
off, with an API key, with a JWT (its issuer's JWKS served by this script), and with
an API key over mTLS (the certificates of `tls: auto`, made in a temporary directory).

    .venv/bin/python bench/auth_bench.py [--calls 3000]

GetCallerIdentity does no I/O, so the difference between the rows is the interceptor:
reading the token, checking it, the policy table, and the identity handed to the
servicer; the mTLS row adds TLS on the kept-alive channel (the handshake is paid once,
in the warm-up). Prints p50/p95 latency (sequential calls) and calls/s at 32 concurrent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from llama_mesh.client import AsyncClient, Credentials
from llama_mesh.config import NO_AUTH, SecurityConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.access import new_secret
from llama_mesh.launch.certificates import LocalPki
from llama_mesh.launch.nats_server import EmbeddedNats


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(
    address: str, credentials: Credentials, calls: int
) -> tuple[float, float, float]:
    async with AsyncClient(address, credentials=credentials) as client:
        for _ in range(100):  # warm up the channel and any caches
            await client.api_keys.whoami()
        latencies = []
        for _ in range(calls):
            start = time.perf_counter()
            await client.api_keys.whoami()
            latencies.append(time.perf_counter() - start)

        async def worker(n: int) -> None:
            for _ in range(n):
                await client.api_keys.whoami()

        start = time.perf_counter()
        await asyncio.gather(*(worker(calls // 32) for _ in range(32)))
        rate = (calls // 32) * 32 / (time.perf_counter() - start)
    return _percentile(latencies, 0.5) * 1e6, _percentile(latencies, 0.95) * 1e6, rate


async def main(calls: int) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1"}
    app = Starlette(routes=[Route("/jwks", lambda r: JSONResponse({"keys": [jwk]}))])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    issuer = f"http://127.0.0.1:{sock.getsockname()[1]}"
    http = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(http.serve(sockets=[sock]))
    token, digest = new_secret("bench")
    claims = {"iss": issuer, "aud": "mesh", "sub": "bench", "exp": int(time.time()) + 3600}
    signed = jwt.encode({**claims, "roles": ["client"]}, key, "RS256", headers={"kid": "k1"})
    with_jwt = SecurityConfig(jwt_issuer=issuer, jwt_audience="mesh", jwt_jwks_url=f"{issuer}/jwks")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pki = LocalPki.create(Path(tmp) / "tls")
        mtls = SecurityConfig(
            tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca_cert
        )
        async with EmbeddedNats.start(Path(tmp) / "nats") as nats:
            for label, security, credentials in (
                ("auth off", NO_AUTH, Credentials()),
                ("API key", SecurityConfig(), Credentials(token=token)),
                ("JWT (RS256)", with_jwt, Credentials(token=signed)),
                (
                    "API key+mTLS",
                    mtls,
                    Credentials(token=token).with_tls(pki.ca_cert, pki.client_cert, pki.client_key),
                ),
            ):
                async with ControlPlaneServer.start(
                    [nats.url], security=security, install_keys=[("bench", ["client"], digest)]
                ) as cp:
                    rows.append((label, *await _measure(cp.address, credentials, calls)))
    http.should_exit = True
    await serving
    base = rows[0][1]
    print(f"{'':<14}{'p50 µs':>9}{'p95 µs':>9}{'calls/s c=32':>14}{'Δp50 µs':>10}")
    for label, p50, p95, rate in rows:
        print(f"{label:<14}{p50:>9.0f}{p95:>9.0f}{rate:>14.0f}{p50 - base:>10.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    asyncio.run(main(parser.parse_args().calls))
    sys.exit(0)
