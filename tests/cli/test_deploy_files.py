"""deploy/: the Kubernetes manifests and the Dockerfile parse, and every llama-mesh
command in them is one the CLI accepts (options, types, workflow references)."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_mesh.worker.loader import load_workflow

from .conftest import ROOT, parse_command

DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


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
            assert container[probe]["grpc"]["port"] == params["port"], (name, probe)


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
