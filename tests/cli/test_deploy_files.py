"""deploy/: the Kubernetes manifests and the Dockerfile parse, and every llama-mesh
command in them is one the CLI accepts (options, types, workflow references)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_mesh.cli.flags import parse
from llama_mesh.config import GatewayConfig, SecurityConfig
from llama_mesh.config.command_line import CONTROL_PLANE_OPTIONS, GATEWAY_OPTIONS, SERVICE_OPTIONS
from llama_mesh.launch.deployment import parse_deployment
from llama_mesh.rpc.server import is_loopback
from llama_mesh.worker.loader import load_workflow

from .conftest import ROOT, parse_command

DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
SCALE_OUT = ROOT / "docs" / "scale-out.md"


def doc_blocks(language: str) -> list[str]:
    """The ```language blocks of docs/scale-out.md."""
    text = SCALE_OUT.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.M | re.S)


def doc_commands(program: str) -> list[list[str]]:
    """The `program` command lines of the page's bash blocks, as argv."""
    return [
        shlex.split(line)[1:]
        for block in doc_blocks("bash")
        for line in block.splitlines()
        if line.startswith(f"{program} ")
    ]


def documents() -> list[dict[str, Any]]:
    docs = []
    for manifest in MANIFESTS:
        for doc in yaml.safe_load_all(manifest.read_text()):
            if doc is not None and doc.get("kind") != "Kustomization":
                docs.append(doc)
    return docs


def mesh_containers() -> list[dict[str, Any]]:
    return [
        container
        for doc in documents()
        if doc["kind"] in ("Deployment", "StatefulSet")
        for container in doc["spec"]["template"]["spec"]["containers"]
        if container["image"].startswith("llama-mesh")
    ]


def workflows_dir_in_image() -> Path:
    """Where the Dockerfile copies the example workflows from (for /app/workflows)."""
    match = re.search(r"^COPY (\S+) /app/workflows$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert match
    return ROOT / match.group(1)


def test_every_manifest_parses_as_kubernetes_objects() -> None:
    docs = documents()
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert "Deployment/llama-mesh-control-plane" in kinds
    assert "Deployment/llama-mesh-gateway" in kinds
    assert "Deployment/llama-mesh-service-echo" in kinds
    assert "StatefulSet/nats" in kinds
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"]
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        m.name for m in MANIFESTS if m.name != "kustomization.yaml"
    )


def test_every_container_runs_a_command_that_exists() -> None:
    commands = {}
    for container in mesh_containers():
        name, params = parse_command(container["args"])
        commands[name] = params
        if name == "serve service":
            path = workflows_dir_in_image() if params["path"] == Path("/app/workflows") else None
            assert path is not None
            load_workflow(params["workflow"], path)
    assert set(commands) == {"serve control-plane", "serve gateway", "serve service"}
    assert commands["serve control-plane"]["replicas"] == 3  # JetStream replicas on 3 nodes


def test_grpc_probes_check_the_port_the_process_serves() -> None:
    for container in mesh_containers():
        name, params = parse_command(container["args"])
        ports = {p["containerPort"] for p in container["ports"]}
        assert params["port"] in ports
        assert params["host"] == "0.0.0.0"
        if name == "serve gateway":
            assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
            continue
        for probe in ("readinessProbe", "livenessProbe"):
            # tcpSocket: Kubernetes' grpc probes speak plaintext, and these serve TLS.
            assert container[probe]["tcpSocket"]["port"] == params["port"], (name, probe)


def _check_secure(args: list[str]) -> str:
    """Assert that a `llama-mesh serve` command beyond loopback would start: TLS and
    authentication on its server, TLS to its upstream. Its command name."""
    name, params = parse_command(args)
    options = {"serve control-plane": CONTROL_PLANE_OPTIONS, "serve service": SERVICE_OPTIONS}
    if name in options:
        security = parse(SecurityConfig, options[name], params)
        if not is_loopback(params["host"]):
            assert security.auth and security.tls_cert, (
                name,
                "needs --auth and --tls-cert/--tls-key",
            )
    elif name == "serve gateway":
        gateway = parse(GatewayConfig, GATEWAY_OPTIONS, params)
        if not is_loopback(params["upstream"].rsplit(":", 1)[0]):
            assert gateway.upstream_tls, (name, "reaches its control plane without TLS")
    return name


def test_servers_beyond_loopback_have_tls_and_auth() -> None:
    """What `serve` refuses (InsecureBindError) appears nowhere: not in the manifests,
    the Dockerfile or the page's commands."""
    commands = [container["args"] for container in mesh_containers()]
    cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert cmd
    commands.append(yaml.safe_load(cmd.group(1)))
    commands += doc_commands("llama-mesh")
    names = [_check_secure(args) for args in commands]
    assert names.count("serve gateway") == 2 and names.count("serve service") == 2


def test_the_pages_deployment_file_is_valid(tmp_path: Path) -> None:
    (block,) = [b for b in doc_blocks("yaml") if b.startswith("name: quickstart")]
    deployment = parse_deployment(block, tmp_path / "deployment.yaml")  # DeploymentError if not
    assert deployment.control_plane.host == "0.0.0.0"
    assert deployment.security.auth and deployment.security.serves_tls


def _secrets_the_page_creates() -> dict[str, set[str]]:
    """Secret name -> its keys, from the page's `kubectl create secret generic` lines."""
    secrets: dict[str, set[str]] = {}
    for argv in doc_commands("kubectl"):
        if argv[:3] != ["create", "secret", "generic"]:
            continue
        keys = secrets.setdefault(argv[3], set())
        for arg in argv[4:]:
            source = arg.removeprefix("--from-file=")
            key, _, path = source.rpartition("=")
            keys.add(key or Path(path).name)
    return secrets


def test_the_files_containers_name_are_mounted_from_secrets_the_page_creates(
    tmp_path: Path,
) -> None:
    secrets = _secrets_the_page_creates()
    assert set(secrets) == {"llama-mesh-tls", "llama-mesh-keys", "llama-mesh-service-echo"}
    for doc in documents():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            _, params = parse_command(container["args"])
            files = [
                value for key, value in params.items() if key != "path" and isinstance(value, Path)
            ]
            files += [Path(e["value"]) for e in container.get("env", []) if "_FILE" in e["name"]]
            assert files or container["name"] == "nats", container["name"]
            for file in files:
                (mount,) = [
                    m
                    for m in container.get("volumeMounts", [])
                    if file.parent == Path(m["mountPath"])
                ]
                secret = volumes[mount["name"]]["secret"]
                items = {i["path"]: i["key"] for i in secret.get("items", [])}
                key = items.get(file.name, file.name)
                assert key in secrets[secret["secretName"]], (container["name"], str(file))

    # The page's Python makes every file those Secrets are created from.
    (snippet,) = [block for block in doc_blocks("python") if "DeploymentKeys" in block]
    with contextlib.chdir(tmp_path):
        exec(compile(snippet, str(SCALE_OUT), "exec"), {})
    for argv in doc_commands("kubectl"):
        for arg in argv[4:] if argv[:3] == ["create", "secret", "generic"] else []:
            path = arg.removeprefix("--from-file=").rpartition("=")[2]
            assert (tmp_path / path).is_file(), path


def test_the_keys_the_page_makes_in_the_clone_are_ignored_by_git() -> None:
    """A reader's `git add -A` must not take the CA's private key or the admin token."""
    made = {d for block in doc_blocks("python") for d in re.findall(r'Path\("([^"]+)"\)', block)}
    assert made == {"examples/quickstart/pki", "secrets/tls", "secrets/keys"}
    for directory in made:
        for name in ("ca.key", "admin.token"):
            ignored = subprocess.run(
                ["git", "check-ignore", "-q", f"{directory}/{name}"], cwd=ROOT, check=False
            )
            assert ignored.returncode == 0, f"{directory}/{name} is not ignored by git"


def test_addresses_name_services_that_exist() -> None:
    services = {
        d["metadata"]["name"]: {p["port"] for p in d["spec"]["ports"]}
        for d in documents()
        if d["kind"] == "Service"
    }
    for container in mesh_containers():
        _, params = parse_command(container["args"])
        for key in ("upstream", "control_plane"):
            if key in params:
                host, port = params[key].rsplit(":", 1)
                assert int(port) in services[host], (key, params[key])
        for url in params.get("nats", []):
            host = url.removeprefix("nats://").split(":")[0]
            assert host.split(".")[1] in services  # nats-0.nats -> headless Service "nats"


def test_the_dockerfile_copies_what_exists_and_runs_the_cli() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for item in shlex.split(source):
            assert (ROOT / item).exists(), item
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert entrypoint and cmd
    assert yaml.safe_load(entrypoint.group(1)) == ["llama-mesh"]
    assert "llama-mesh" in scripts
    name, _ = parse_command(yaml.safe_load(cmd.group(1)))
    assert name == "serve control-plane"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
async def test_kubectl_kustomize_builds_the_manifests() -> None:
    process = await asyncio.create_subprocess_exec(
        "kubectl",
        "kustomize",
        str(DEPLOY / "kubernetes"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert len(list(yaml.safe_load_all(stdout))) == len(documents())
