"""Every RPC of every API, called without credentials and as each role, does what the
policy table declares; an RPC without a policy fails here."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import llama_mesh.v1
from llama_mesh.rpc.identity import Identity
from llama_mesh.rpc.policy import POLICY, markdown_table

from .conftest import ROLES, SecureMesh, call

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = ROOT / "python" / "llama_mesh" / "v1" / "llama_mesh.binpb"
PACKAGE = "llama_mesh.v1"
DENIED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)

for _module in pkgutil.iter_modules(llama_mesh.v1.__path__):
    if _module.name.endswith("_pb2"):
        importlib.import_module(f"llama_mesh.v1.{_module.name}")


def _rpcs() -> list[tuple[str, descriptor_pb2.MethodDescriptorProto]]:
    """(`/package.Service/Method`, method) for every RPC in the committed descriptor set."""
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(DESCRIPTOR_SET.read_bytes())
    return [
        (f"/{PACKAGE}.{s.name}/{m.name}", m)
        for f in fds.file
        if f.package == PACKAGE
        for s in f.service
        for m in s.method
    ]


RPCS = _rpcs()


def _message(type_name: str) -> Any:
    descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name.lstrip("."))
    return message_factory.GetMessageClass(descriptor)


def _set(request: Any, path: str, value: str) -> None:
    *parents, last = path.split(".")
    target = request
    for part in parents:
        target = getattr(target, part)
    setattr(target, last, value)


def test_every_rpc_has_a_policy_and_the_table_has_nothing_else() -> None:
    methods = {name for name, _ in RPCS}
    missing = sorted(methods - POLICY.keys())
    assert not missing, f"RPCs without an access policy in rpc/policy.py: {missing}"
    assert sorted(POLICY.keys() - methods) == [], "policies for RPCs that do not exist"


def test_the_docs_show_the_policy_table() -> None:
    page = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert markdown_table() in page, (
        "docs/security.md's table of roles is stale: paste the output of "
        "`.venv/bin/python -m llama_mesh.rpc.policy`"
    )


async def _status(mesh: SecureMesh, rpc: str, request: Any, who: str | None) -> grpc.StatusCode:
    method = next(m for name, m in RPCS if name == rpc)
    on_replica = rpc.startswith(f"/{PACKAGE}.ServiceAPI/")
    address = mesh.replicas["echo"].address if on_replica else mesh.control_plane
    async with grpc.aio.insecure_channel(address) as channel:
        return await call(
            channel,
            rpc,
            request,
            _message(method.output_type),
            mesh.metadata(who),
            streaming=method.server_streaming,
        )


@pytest.mark.timeout(300)
async def test_each_rpc_without_credentials_and_as_each_role(secure_mesh: SecureMesh) -> None:
    # The replica's drain goes last: it is allowed to admin, and stops the replica.
    rpcs = sorted(RPCS, key=lambda r: r[0].endswith("/DrainService"))
    problems = []
    for rpc, method in rpcs:
        empty = _message(method.input_type)()
        code = await _status(secure_mesh, rpc, empty, None)
        if code != grpc.StatusCode.UNAUTHENTICATED:
            problems.append(f"{rpc} without credentials: {code.name}")
        rule = POLICY[rpc]
        for who, roles in ROLES.items():
            identity = Identity.of(who, roles)
            requests = [("an empty request", empty, rule.admits(identity))]
            if rule.owner is not None and identity.services and not identity.is_admin:
                # Owned: allowed for the caller's own service only (client roles aside).
                by_client = "client" in roles and "client" in rule.roles
                own, foreign = _message(method.input_type)(), _message(method.input_type)()
                value = "topics/tasks.{}" if rule.owner.field == "topic" else "services/{}"
                _set(own, rule.owner.field, value.format(sorted(identity.services)[0]))
                _set(foreign, rule.owner.field, value.format("someone-else"))
                if "replica_id" in own.DESCRIPTOR.fields_by_name:
                    own.replica_id = foreign.replica_id = "r1"
                requests = [
                    ("an empty request", empty, by_client),
                    ("its own service", own, True),
                    ("another service", foreign, by_client),
                ]
            for what, request, allowed in requests:
                code = await _status(secure_mesh, rpc, request, who)
                if allowed and code in DENIED:
                    problems.append(f"{rpc} as {who} with {what}: denied ({code.name})")
                if not allowed and code != grpc.StatusCode.PERMISSION_DENIED:
                    problems.append(f"{rpc} as {who} with {what}: {code.name}, not denied")
    assert not problems, "\n".join(problems)


async def test_health_and_reflection_stay_open(secure_mesh: SecureMesh) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(secure_mesh.control_plane) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        # types-grpcio-health-checking declares HealthStub without its methods.
        check = health.Check  # type: ignore[attr-defined]
        response = await check(health_pb2.HealthCheckRequest(), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        # Watch, through every interceptor of the server: it answered INTERNAL (TypeError).
        watch = health.Watch(health_pb2.HealthCheckRequest())  # type: ignore[attr-defined]
        first = await asyncio.wait_for(anext(aiter(watch)), 5)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


async def test_a_wrong_token_is_unauthenticated(secure_mesh: SecureMesh) -> None:
    admin = secure_mesh.tokens["admin"]
    forged = admin[:-4] + ("AAAA" if not admin.endswith("AAAA") else "BBBB")
    for token in (forged, "lmk_nobody." + "x" * 43, "not-a-token", "a.b.c"):
        async with grpc.aio.insecure_channel(secure_mesh.control_plane) as channel:
            code = await call(
                channel,
                "/llama_mesh.v1.ControlPlaneAPI/ListSessions",
                _message("llama_mesh.v1.ListSessionsRequest")(),
                _message("llama_mesh.v1.ListSessionsResponse"),
                [("authorization", f"Bearer {token}")],
            )
        assert code == grpc.StatusCode.UNAUTHENTICATED, token
