"""`llama-mesh up` with TLS on: mTLS between its components (the gateway too), and the
CLI, curl through the gateway, grpcurl with the CA and the Python client all get
through, while plaintext does not."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from llama_mesh.client import AsyncClient, Credentials
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
