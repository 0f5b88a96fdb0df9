"""TLS and mTLS end to end: the control plane, a replica's Service API and the
replica's own channel, with certificates made by the test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from llama_mesh.client import AsyncClient, Credentials
from llama_mesh.config import SecurityConfig, ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.core.access import new_secret
from llama_mesh.core.errors import UnavailableError
from llama_mesh.launch.certificates import LocalPki, issue, make_ca
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.rpc.server import InsecureBindError, serve
from llama_mesh.v1 import service_pb2, service_pb2_grpc
from llama_mesh.worker.runtime import ServiceRuntime
from llama_mesh_gateway import GatewayServer, UpstreamTls

from mesh_workflows import EchoWorkflow


@dataclass
class TlsMesh:
    address: str
    pki: LocalPki
    admin: str
    echo: str
    replica: ServiceRuntime


@contextlib.asynccontextmanager
async def _tls_mesh(nats: EmbeddedNats, pki: LocalPki, *, mutual: bool) -> AsyncIterator[TlsMesh]:
    admin, admin_digest = new_secret("admin")
    echo, echo_digest = new_secret("echo")
    security = SecurityConfig(
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        tls_client_ca=pki.ca_cert if mutual else None,
    )
    component = Credentials(
        token=echo,
        ca_file=pki.ca_cert,
        cert_file=pki.client_cert if mutual else None,
        key_file=pki.client_key if mutual else None,
    )
    keys = [
        ("admin", ["admin"], admin_digest),
        ("echo", ["service:echo", "client"], echo_digest),
    ]
    # The replica reaches the control plane over (m)TLS and serves its own API so.
    async with (
        ControlPlaneServer.start([nats.url], security=security, install_keys=keys) as cp,
        ServiceRuntime.start(
            EchoWorkflow(),
            ServiceConfig("echo"),
            cp.address,
            drain_timeout=2.0,
            credentials=component,
            security=security,
        ) as replica,
    ):
        yield TlsMesh(cp.address, pki, admin, echo, replica)


async def test_tls_end_to_end(nats: EmbeddedNats, tmp_path: Path) -> None:
    pki = LocalPki.create(tmp_path / "pki")
    async with _tls_mesh(nats, pki, mutual=False) as mesh:
        creds = Credentials(token=mesh.admin, ca_file=pki.ca_cert)
        async with AsyncClient(mesh.address, credentials=creds) as client:
            session = await client.create_session()
            assert await session.run("echo", arg1="tls") == "tls_result"
        # Plaintext to a TLS port does not get through.
        async with AsyncClient(
            mesh.address, credentials=Credentials(token=mesh.admin), reconnect_timeout=0.5
        ) as plain:
            with pytest.raises(UnavailableError):
                await plain.list_sessions()
        # Nor does a client that trusts another CA.
        other_ca, _ = make_ca("someone else")
        (tmp_path / "other.pem").write_bytes(other_ca)
        async with AsyncClient(
            mesh.address,
            credentials=Credentials(token=mesh.admin, ca_file=tmp_path / "other.pem"),
            reconnect_timeout=0.5,
        ) as wrong:
            with pytest.raises(UnavailableError):
                await wrong.list_sessions()


async def test_mtls_end_to_end(nats: EmbeddedNats, tmp_path: Path) -> None:
    pki = LocalPki.create(tmp_path / "pki")
    async with _tls_mesh(nats, pki, mutual=True) as mesh:
        with_cert = Credentials(
            token=mesh.admin,
            ca_file=pki.ca_cert,
            cert_file=pki.client_cert,
            key_file=pki.client_key,
        )
        async with AsyncClient(mesh.address, credentials=with_cert) as client:
            session = await client.create_session()
            assert await session.run("echo", arg1="mtls") == "mtls_result"
        # The replica's Service API asks for a client certificate too.
        channel_creds = with_cert.channel_credentials()
        async with grpc.aio.secure_channel(mesh.replica.address, channel_creds) as channel:
            described = await service_pb2_grpc.ServiceAPIStub(channel).DescribeService(
                service_pb2.DescribeServiceRequest(), metadata=with_cert.metadata()
            )
            assert described.name == "services/echo"
        # Without a certificate, or with one from another CA, the handshake fails.
        other_ca, other_key = make_ca("someone else")
        cert, key = issue(other_ca, other_key, "intruder", hosts=(), server=False)
        (tmp_path / "intruder.pem").write_bytes(cert)
        (tmp_path / "intruder.key").write_bytes(key)
        for creds in (
            Credentials(token=mesh.admin, ca_file=pki.ca_cert),
            Credentials(
                token=mesh.admin,
                ca_file=pki.ca_cert,
                cert_file=tmp_path / "intruder.pem",
                key_file=tmp_path / "intruder.key",
            ),
        ):
            async with AsyncClient(mesh.address, credentials=creds, reconnect_timeout=0.5) as c:
                with pytest.raises(UnavailableError):
                    await c.list_sessions()


async def test_the_gateway_reaches_an_mtls_control_plane(
    nats: EmbeddedNats, tmp_path: Path
) -> None:
    pki = LocalPki.create(tmp_path / "pki")
    upstream = UpstreamTls(pki.ca_cert, pki.client_cert, pki.client_key)
    async with (
        _tls_mesh(nats, pki, mutual=True) as mesh,
        GatewayServer(mesh.address, port=0, upstream_tls=upstream) as gateway,
        GatewayServer(mesh.address, port=0) as plaintext,
        GatewayServer(mesh.address, port=0, upstream_tls=UpstreamTls(pki.ca_cert)) as without_cert,
        httpx.AsyncClient(timeout=30) as http,
    ):
        admin = {"authorization": f"Bearer {mesh.admin}"}
        health = await http.get(f"{gateway.url}/healthz")
        assert health.status_code == 200, health.text
        run = await http.post(
            f"{gateway.url}/v1/sessions/tls/tasks:run",
            json={"task": {"service": "echo", "input": {"arg1": "gw"}}},
            headers=admin,
        )
        assert run.status_code == 404, run.text  # no such session: the call got through
        created = await http.post(f"{gateway.url}/v1/sessions", json={}, headers=admin)
        assert created.status_code == 200, created.text
        session = created.json()["name"]
        run = await http.post(
            f"{gateway.url}/v1/{session}/tasks:run",
            json={"task": {"service": "echo", "input": {"arg1": "gw"}}},
            headers=admin,
        )
        assert run.status_code == 200, run.text
        assert run.json()["result"] == "gw_result"
        # The gateway adds no credentials of its own: its certificate is not a token.
        anonymous = await http.post(f"{gateway.url}/v1/sessions", json={})
        assert anonymous.status_code == 401, anonymous.text
        # Plaintext, or TLS without the client certificate mTLS asks for, does not
        # get through.
        for other in (plaintext, without_cert):
            refused = await http.get(f"{other.url}/v1/sessions", headers=admin)
            assert refused.status_code == 503, refused.text


async def test_listening_beyond_loopback_needs_tls_and_auth() -> None:
    with pytest.raises(InsecureBindError, match="without TLS and authentication"):
        async with serve([], host="0.0.0.0", port=0):
            pass
