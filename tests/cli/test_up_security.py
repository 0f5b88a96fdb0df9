"""`up` is secure by default and still two commands: the tokens it writes, the CLI that
finds them, keys issued and revoked from the CLI, and an exposed bind refused."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import grpc
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient

from llama_mesh.launch.deployment import DeploymentError, load_deployment
from llama_mesh.v1 import control_plane_pb2, control_plane_pb2_grpc

from .conftest import cli, llama_mesh_up, quickstart, write_deployment


@pytest.mark.timeout(180)
async def test_up_writes_tokens_only_its_user_reads_and_the_cli_uses_them(
    tmp_path: Path,
) -> None:
    file = write_deployment(tmp_path / "deployment.yaml", quickstart(tmp_path, services=["echo"]))
    async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
        auth = tmp_path / "state" / "auth"
        for secret in (auth / "admin.token", auth / "services" / "echo.token", auth / "keys.json"):
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
        assert up.token not in (auth / "keys.json").read_text()  # only digests

        # Without a token nothing answers but health; the service's own token is no admin.
        async with grpc.aio.insecure_channel(up.control_plane) as channel:
            stub = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListSessions(control_plane_pb2.ListSessionsRequest())
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # The CLI without one says where it reads a token from, not which header to send.
        bare = await cli("sessions", "list", "-c", up.control_plane, env={"LLAMA_MESH_TOKEN": ""})
        assert bare.code == 5
        assert bare.stderr == (
            f"error: UnauthenticatedError: the control plane at {up.control_plane} asks for "
            "a token and none was given: export LLAMA_MESH_TOKEN (the line `llama-mesh up` "
            "prints), set LLAMA_MESH_TOKEN_FILE, or give the deployment file with --file "
            "(its admin token)\n"
        )
        service_token = (auth / "services" / "echo.token").read_text().strip()
        denied = await cli(
            "keys",
            "list",
            "-c",
            up.control_plane,
            env={**up.env, "LLAMA_MESH_TOKEN": service_token},
        )
        assert denied.code != 0 and "PermissionDenied" in denied.stderr

        # An admin issues a client key from the CLI (the deployment's token, via -f) ...
        created = await cli(
            "keys", "create", "--role", "client", "--id", "ci", "-f", str(file), "-o", "json"
        )
        assert created.code == 0, created.stderr
        ci = created.json()["token"]
        as_ci = {**up.env, "LLAMA_MESH_TOKEN": ci}
        ran = await cli("run", "echo", "--arg", "arg1=ci", "-c", up.control_plane, env=as_ci)
        assert ran.code == 0 and json.loads(ran.stdout) == "ci_result", ran.stderr
        # ... rotates it (the old token stops at once) and revokes the new one.
        rotated = await cli("keys", "rotate", "ci", "-f", str(file), "-o", "json")
        new_ci = rotated.json()["token"]
        old = await cli("run", "echo", "-c", up.control_plane, env=as_ci)
        assert old.code != 0 and "Unauthenticated" in old.stderr
        assert (await cli("keys", "delete", "ci", "-f", str(file))).code == 0
        revoked = await cli(
            "run", "echo", "-c", up.control_plane, env={**up.env, "LLAMA_MESH_TOKEN": new_ci}
        )
        assert revoked.code != 0 and "Unauthenticated" in revoked.stderr

        # Keys confined to a namespace: one team's session is not the other's to see.
        teams = {}
        for team in ("a", "b"):
            made = await cli(
                "keys", "create", "--role", "client", "--namespace", f"team-{team}",
                "-f", str(file), "-o", "json",
            )  # fmt: skip
            assert made.code == 0, made.stderr
            assert made.json()["namespace"] == f"team-{team}"
            teams[team] = {**up.env, "LLAMA_MESH_TOKEN": made.json()["token"]}
        at = ("-c", up.control_plane, "-o", "json")
        mine = await cli("sessions", "create", "reports", *at, env=teams["a"])
        assert mine.code == 0 and mine.json()["namespace"] == "team-a", mine.stderr
        theirs = await cli("sessions", "get", "reports", *at, env=teams["b"])
        assert theirs.code == 3
        assert theirs.json()["error"]["message"] == "session 'sessions/reports' not found"
        assert (await cli("sessions", "list", *at, env=teams["b"])).json() == []
        listed = (await cli("keys", "list", "-f", str(file), "-o", "json")).json()
        assert sorted(k["namespace"] for k in listed if k["namespace"]) == ["team-a", "team-b"]

        # NATS admits only the mesh's components; a service's key cannot wreck it.
        await _nats_is_locked_down(str(up.summary["nats"][0]), auth / "nats")


async def _nats_is_locked_down(url: str, users: Path) -> None:
    # Closed by the block: nats-py leaves the socket of a refused connect without
    # reconnects open (nats-py 2.16), and the garbage collector found it in a later test.
    async with NatsClient() as refused:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await refused.connect(url, allow_reconnect=False, connect_timeout=5, error_cb=_ignore)
    violations: list[str] = []
    forged = ("mesh.tasks.other", "$kv.mesh_agents.forged", "mesh.created.s1")
    all_refused = asyncio.Event()

    async def record(err: Exception) -> None:
        violations.append(str(err).lower())
        if all(any(f in v for v in violations) for f in forged):
            all_refused.set()

    nc = await nats.connect(url, nkeys_seed=str(users / "service-echo.nk"), error_cb=record)
    try:
        js = nc.jetstream(timeout=2)
        for wreck in (js.delete_stream("MESH_DEAD"), js.delete_key_value("mesh_sessions")):
            with pytest.raises(nats.errors.TimeoutError):
                await wreck  # refused by the server: no JetStream reply comes
        await nc.publish("mesh.tasks.other", b"forged task")
        await nc.publish("$KV.mesh_agents.forged", b"an agent it made up")
        # An entry in the creation index would put a task it made up ahead in the turns.
        await nc.publish("mesh.created.s1", b"a task created out of turn")
        await nc.flush()
        # The server's -ERR for a publish reaches error_cb on a task of its own: wait for
        # all, not for the flush alone (which raced them under load).
        async with asyncio.timeout(30):
            await all_refused.wait()
    finally:
        await nc.close()
    assert any("stream.delete.mesh_dead" in v for v in violations), violations
    assert any("stream.delete.kv_mesh_sessions" in v for v in violations), violations
    assert any("mesh.tasks.other" in v for v in violations), violations
    assert any("$kv.mesh_agents.forged" in v for v in violations), violations
    assert any("mesh.created.s1" in v for v in violations), violations


async def _ignore(err: Exception) -> None:
    pass


def test_a_deployment_that_listens_beyond_loopback_needs_tls_and_auth(tmp_path: Path) -> None:
    data = quickstart(tmp_path, services=["echo"])
    data["control_plane"]["host"] = "0.0.0.0"
    file = write_deployment(tmp_path / "exposed.yaml", data)
    with pytest.raises(DeploymentError) as caught:
        load_deployment(file)
    assert "control_plane.host" in str(caught.value)
    assert "without TLS and authentication" in str(caught.value)
    assert "security.tls: auto" in str(caught.value)
