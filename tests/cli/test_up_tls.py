"""`llama-mesh up` with TLS on, from files or made by `up` itself (`tls: auto`): mTLS
between its components (the gateway too), and the CLI, curl through the gateway,
grpcurl with the CA and the Python client all get through, while plaintext and
certificates of another CA do not."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import stat
import sys
from pathlib import Path

import grpc
import nats
import pytest

from llama_mesh.client import AsyncClient, Credentials
from llama_mesh.core.errors import MeshError
from llama_mesh.launch.certificates import LocalPki

from .conftest import cli, llama_mesh_up, quickstart, write_deployment

GRPCURL = Path(sys.executable).parent / "grpcurl"


async def _run(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(30):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_up_with_mtls_serves_the_cli_curl_grpcurl_and_python(tmp_path: Path) -> None:
    pki = LocalPki.create(tmp_path / "tls")
    data = quickstart(tmp_path, services=["echo"])
    data["security"] = {
        "tls_cert": str(pki.server_cert),
        "tls_key": str(pki.server_key),
        "tls_client_ca": str(pki.ca_cert),
    }
    file = write_deployment(tmp_path / "deployment.yaml", data)
    async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
        client_files = {
            "LLAMA_MESH_CA_FILE": str(pki.ca_cert),
            "LLAMA_MESH_CERT_FILE": str(pki.client_cert),
            "LLAMA_MESH_KEY_FILE": str(pki.client_key),
        }
        # The CLI, with the CA and a client certificate from the environment.
        ran = await cli(
            "run", "echo", "--arg", "arg1=cli", "-o", "json", "-c", up.control_plane,
            env={**up.env, **client_files},
        )  # fmt: skip
        assert ran.code == 0, ran.stderr
        assert ran.json()["result"] == "cli_result"
        # Without them the CLI cannot get through.
        plain = await cli("sessions", "list", "-c", up.control_plane, env=up.env, timeout=60)
        assert plain.code != 0

        # curl through the gateway, which reaches the control plane over mTLS.
        code, out, err = await _run(
            "curl", "-s", "-X", "POST", f"{up.summary['gateway']}/v1/sessions/tls/tasks:run",
            "-H", f"Authorization: Bearer {up.token}",
            "-d", json.dumps({"task": {"service": "echo", "input": {"arg1": "curl"}}}),
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["code"] == 5, out  # NOT_FOUND: no session "tls"; it got through
        code, out, err = await _run(
            "curl", "-s", "-X", "POST", f"{up.summary['gateway']}/v1/sessions",
            "-H", f"Authorization: Bearer {up.token}", "-d", "{}",
        )  # fmt: skip
        session = json.loads(out)["name"]
        code, out, err = await _run(
            "curl", "-s", "-X", "POST", f"{up.summary['gateway']}/v1/{session}/tasks:run",
            "-H", f"Authorization: Bearer {up.token}",
            "-d", json.dumps({"task": {"service": "echo", "input": {"arg1": "curl"}}}),
        )  # fmt: skip
        assert json.loads(out)["result"] == "curl_result", out

        # grpcurl with the CA and the client certificate; plaintext is refused.
        tls_args = ["-cacert", str(pki.ca_cert), "-cert", str(pki.client_cert)]
        tls_args += ["-key", str(pki.client_key)]
        request = {"parent": session, "task": {"service": "echo", "input": {"arg1": "g"}}}
        code, out, err = await _run(
            str(GRPCURL), *tls_args, "-H", f"authorization: Bearer {up.token}",
            "-d", json.dumps(request),
            up.control_plane, "llama_mesh.v1.ControlPlaneAPI/RunTask",
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["task"]["result"] == "g_result"
        code, out, err = await _run(
            str(GRPCURL), "-plaintext", "-H", f"authorization: Bearer {up.token}",
            up.control_plane, "llama_mesh.v1.ControlPlaneAPI/ListServices",
        )  # fmt: skip
        assert code != 0

        # Python.
        credentials = Credentials(
            token=up.token,
            ca_file=pki.ca_cert,
            cert_file=pki.client_cert,
            key_file=pki.client_key,
        )
        async with AsyncClient(up.control_plane, credentials=credentials) as client:
            python_session = await client.create_session()
            assert await python_session.run("echo", arg1="py") == "py_result"


async def test_a_gateway_whose_upstream_ca_cannot_be_read_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    ran = await cli(
        "serve", "gateway", "--upstream", "127.0.0.1:1", "--port", "0",
        "--upstream-ca", str(missing),
    )  # fmt: skip
    assert ran.code == 2, ran.stderr
    assert f"--upstream-ca {missing}: No such file or directory" in ran.stderr
    half = await cli(
        "serve", "gateway", "--upstream", "127.0.0.1:1", "--port", "0",
        "--upstream-ca", str(missing), "--upstream-cert", str(missing),
    )  # fmt: skip
    assert half.code == 2, half.stderr
    assert "upstream_cert and upstream_key go together" in half.stderr


def _without_mesh_settings() -> dict[str, str]:
    """This process's environment with no LLAMA_MESH_* (token, CA, address) in it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_MESH_")}


@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_tls_auto_is_one_line_and_keeps_its_ca_across_restarts(tmp_path: Path) -> None:
    data = quickstart(tmp_path, services=["echo"])
    data["security"] = {"tls": "auto"}
    data["gateway"]["https"] = True
    file = write_deployment(tmp_path / "deployment.yaml", data)
    bare = _without_mesh_settings()
    # A token exported for another deployment does not stand in for the components' own.
    stale = {"LLAMA_MESH_TOKEN": "lmk_admin.0123", "LLAMA_MESH_CA_FILE": "/nonexistent.pem"}
    async with llama_mesh_up(file, log=tmp_path / "up.log", env=stale) as up:
        tls = {k: Path(v) for k, v in up.summary["tls"].items()}
        assert tls["ca"] == tmp_path / "state" / "tls" / "ca.pem"
        for key in (tmp_path / "state" / "tls").glob("*.key"):
            assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        ca = await asyncio.to_thread(tls["ca"].read_bytes)

        # The CLI finds the token, the CA and its client certificate from the file.
        ran = await cli("run", "echo", "--arg", "arg1=cli", "-o", "json", "-f", str(file), env=bare)
        assert ran.code == 0, ran.stderr
        assert ran.json()["result"] == "cli_result"

        # Python, from the variables `up` prints.
        tls_env = {
            "LLAMA_MESH_TOKEN": up.token,
            "LLAMA_MESH_CA_FILE": str(tls["ca"]),
            "LLAMA_MESH_CERT_FILE": str(tls["cert"]),
            "LLAMA_MESH_KEY_FILE": str(tls["key"]),
        }
        credentials = Credentials.from_env(tls_env)
        async with AsyncClient(up.control_plane, credentials=credentials) as client:
            session = await client.create_session()
            assert await session.run("echo", arg1="py") == "py_result"

        # Refused: plaintext; TLS without a client certificate; a certificate of another CA.
        other = LocalPki.create(tmp_path / "other")
        for refused in (
            Credentials(token=up.token),
            Credentials(token=up.token, ca_file=tls["ca"]),
            Credentials(
                token=up.token,
                ca_file=tls["ca"],
                cert_file=other.client_cert,
                key_file=other.client_key,
            ),
        ):
            async with AsyncClient(up.control_plane, credentials=refused) as client:
                with pytest.raises(MeshError) as caught:
                    await client.create_session()
                assert caught.value.code is grpc.StatusCode.UNAVAILABLE, refused

        # curl through the HTTPS gateway with the CA; /metrics wants the admin token.
        gateway = str(up.summary["gateway"])
        assert gateway.startswith("https://127.0.0.1:")
        curl = ["curl", "-s", "--cacert", str(tls["ca"])]
        auth = ["-H", f"Authorization: Bearer {up.token}"]
        code, out, err = await _run(
            *curl, *auth, "-X", "POST", f"{gateway}/v1/sessions", "-d", "{}"
        )
        assert code == 0, err
        session_name = json.loads(out)["name"]
        code, out, err = await _run(
            *curl, *auth, "-X", "POST", f"{gateway}/v1/{session_name}/tasks:run",
            "-d", json.dumps({"task": {"service": "echo", "input": {"arg1": "curl"}}}),
        )  # fmt: skip
        assert json.loads(out)["result"] == "curl_result", out
        code, out, err = await _run("curl", "-s", f"{gateway}/healthz")  # no --cacert
        assert code == 60, (code, out)  # the certificate cannot be verified
        code, out, _ = await _run(
            *curl, "-o", "/dev/null", "-w", "%{http_code}", f"{gateway}/metrics"
        )
        assert out == "401"
        code, out, _ = await _run(*curl, *auth, f"{gateway}/metrics")
        assert "# TYPE llama_mesh_gateway_requests_total counter" in out
        # grpcurl with the CA and the client certificate.
        code, out, err = await _run(
            str(GRPCURL), "-cacert", str(tls["ca"]), "-cert", str(tls["cert"]),
            "-key", str(tls["key"]), "-H", f"authorization: Bearer {up.token}",
            up.control_plane, "llama_mesh.v1.AuthAPI/GetCallerIdentity",
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["identity"]["roles"] == ["admin"]

        # NATS too: a client without a certificate of the CA gets no connection at all.
        nats_url = up.summary["nats"][0]
        trusting = ssl.create_default_context(cafile=str(tls["ca"]))
        for refused_tls in (None, trusting):
            with pytest.raises(Exception) as nats_error:  # nats-py raises what TLS raised
                connection = await nats.connect(
                    nats_url, tls=refused_tls, allow_reconnect=False, connect_timeout=5
                )
                await connection.close()
            assert isinstance(nats_error.value, (ssl.SSLError, OSError)), nats_error.value
        assert await up.stop() == 0
    # Stopping says nothing alarming about the TLS connections that close.
    stopped = await asyncio.to_thread((tmp_path / "up.log").read_text)
    assert "eof_received" not in stopped, stopped

    # A second `up` keeps the CA: what trusted it trusts the restarted mesh.
    async with llama_mesh_up(file, log=tmp_path / "up2.log") as again:
        assert again.summary["tls"]["ca"] == str(tls["ca"])
        assert await asyncio.to_thread(tls["ca"].read_bytes) == ca
        ran = await cli("sessions", "list", "-f", str(file), env=bare)
        assert ran.code == 0, ran.stderr
        async with AsyncClient(again.control_plane, credentials=credentials) as client:
            assert await client.create_session()
