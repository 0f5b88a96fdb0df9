"""The llama_mesh.v1 contracts: complete, conventional, and in sync with generated code."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DESCRIPTOR_SET = ROOT / "python" / "llama_mesh" / "v1" / "llama_mesh.binpb"
APIS = ("ControlPlaneAPI", "ServiceAPI", "QueueAPI", "AuthAPI", "AgentsAPI", "ResponsesAPI")
# APIs shaped like an existing REST API (llama-stack, OpenAI): their lists page the
# way those APIs do (`limit` with `start_index` or `after`, and `has_more`).
COMPATIBLE_APIS = ("AgentsAPI", "ResponsesAPI")
PACKAGE = "llama_mesh.v1"


def _file_set() -> descriptor_pb2.FileDescriptorSet:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(DESCRIPTOR_SET.read_bytes())
    return fds


def _our_files() -> list[descriptor_pb2.FileDescriptorProto]:
    return [f for f in _file_set().file if f.package == PACKAGE]


def _methods() -> list[tuple[str, descriptor_pb2.MethodDescriptorProto]]:
    return [(s.name, m) for f in _our_files() for s in f.service for m in s.method]


def _messages() -> dict[str, descriptor_pb2.DescriptorProto]:
    return {f".{PACKAGE}.{m.name}": m for f in _our_files() for m in f.message_type}


def test_descriptor_set_has_the_apis_and_imports() -> None:
    names = {f.name for f in _file_set().file}
    assert {
        "llama_mesh/v1/control_plane.proto",
        "llama_mesh/v1/service.proto",
        "llama_mesh/v1/queue.proto",
        "llama_mesh/v1/auth.proto",
        "llama_mesh/v1/resources.proto",
        "llama_mesh/v1/agents.proto",
        "llama_mesh/v1/responses.proto",
        "google/api/http.proto",
        "google/rpc/status.proto",
        "google/protobuf/struct.proto",
    } <= names
    services = {s.name for f in _our_files() for s in f.service}
    assert services == set(APIS)


def test_descriptor_set_keeps_comments() -> None:
    for f in _our_files():
        assert f.source_code_info.location, f"{f.name} has no source info"


@pytest.mark.parametrize("api", APIS)
def test_every_rpc_has_an_http_rule(api: str) -> None:
    methods = [m for s, m in _methods() if s == api]
    assert methods
    for m in methods:
        rule: http_pb2.HttpRule = m.options.Extensions[annotations_pb2.http]
        pattern = rule.WhichOneof("pattern")
        assert pattern is not None, f"{api}.{m.name} has no google.api.http rule"
        path = getattr(rule, pattern) if pattern != "custom" else rule.custom.path
        assert path.startswith("/v1/"), f"{api}.{m.name}: {path}"


def test_every_rpc_has_a_comment() -> None:
    for f in _our_files():
        commented: set[tuple[int, int]] = set()
        for loc in f.source_code_info.location:
            # path [6, s, 2, m] is service s, method m.
            is_method = len(loc.path) == 4 and loc.path[0] == 6 and loc.path[2] == 2
            if is_method and loc.leading_comments.strip():
                commented.add((loc.path[1], loc.path[3]))
        for si, s in enumerate(f.service):
            for mi, m in enumerate(s.method):
                assert (si, mi) in commented, f"{s.name}.{m.name} has no comment"


def test_mutating_rpc_comments_name_their_error_codes() -> None:
    codes = ("NOT_FOUND", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "ALREADY_EXISTS")
    for f in _our_files():
        comments = {
            (loc.path[1], loc.path[3]): loc.leading_comments
            for loc in f.source_code_info.location
            if len(loc.path) == 4 and loc.path[0] == 6 and loc.path[2] == 2
        }
        for si, s in enumerate(f.service):
            for mi, m in enumerate(s.method):
                if m.name.startswith(("Get", "Create", "Delete", "Cancel", "Send", "Publish")):
                    if m.name in ("GetQueueConfig", "GetCallerIdentity"):  # no input
                        continue
                    text = comments[(si, mi)]
                    assert any(c in text for c in codes), f"{s.name}.{m.name}: no error codes"


def test_every_list_rpc_paginates() -> None:
    messages = _messages()
    lists = [(s, m) for s, m in _methods() if m.name.startswith("List")]
    assert len(lists) >= 5
    for service, m in lists:
        req = {f.name for f in messages[m.input_type].field}
        resp = {f.name for f in messages[m.output_type].field}
        if service in COMPATIBLE_APIS:
            assert "limit" in req and req & {"start_index", "after"}, m.name
            assert "has_more" in resp, m.name
            continue
        assert {"page_size", "page_token"} <= req, m.name
        assert "next_page_token" in resp, m.name


def test_every_enum_has_an_unspecified_zero() -> None:
    enums = [e for f in _our_files() for e in f.enum_type]
    enums += [e for m in _messages().values() for e in m.enum_type]
    assert enums
    for e in enums:
        zero = [v for v in e.value if v.number == 0]
        assert zero and zero[0].name.endswith("_UNSPECIFIED"), e.name


def test_task_state_has_the_lifecycle() -> None:
    from llama_mesh.v1 import resources_pb2

    names = set(resources_pb2.TaskState.keys())
    assert names == {
        "TASK_STATE_UNSPECIFIED",
        "TASK_STATE_PENDING",
        "TASK_STATE_RUNNING",
        "TASK_STATE_WAITING_FOR_INPUT",
        "TASK_STATE_SUCCEEDED",
        "TASK_STATE_FAILED",
        "TASK_STATE_CANCELLED",
    }


def test_envelope_is_a_oneof_of_typed_payloads() -> None:
    from llama_mesh.v1 import resources_pb2

    oneofs = resources_pb2.Envelope.DESCRIPTOR.oneofs_by_name
    assert set(oneofs) == {"payload"}
    for field in oneofs["payload"].fields:
        assert field.message_type is not None, field.name


def test_buf_lint_passes() -> None:
    result = subprocess.run(
        [str(BIN / "buf"), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    protos = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "proto/llama_mesh/v1").glob("*.proto")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
            f"--mypy_out={tmp_path}",
            f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
            f"--mypy_grpc_out={tmp_path}",
            *protos,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    subprocess.run(
        [str(BIN / "buf"), "build", "--as-file-descriptor-set", "-o", str(tmp_path / "set.binpb")],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    fresh = tmp_path / "llama_mesh" / "v1"
    committed = ROOT / "python" / "llama_mesh" / "v1"
    names = sorted(p.name for p in fresh.iterdir())
    assert names
    _, mismatch, missing = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert not mismatch and not missing, f"stale generated code {mismatch + missing}: make gen"
    assert (tmp_path / "set.binpb").read_bytes() == DESCRIPTOR_SET.read_bytes(), "make gen"


@pytest.mark.parametrize("api", APIS)
def test_grpcurl_describes_every_service_from_the_descriptor_set(api: str) -> None:
    result = subprocess.run(
        [str(BIN / "grpcurl"), "-protoset", str(DESCRIPTOR_SET), "describe", f"{PACKAGE}.{api}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"{PACKAGE}.{api} is a service" in result.stdout
    for _, m in [x for x in _methods() if x[0] == api]:
        assert f"rpc {m.name} (" in result.stdout
