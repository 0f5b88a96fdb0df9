"""Prometheus metrics: /metrics on the control plane, every replica and the gateway,
scraped before and after a run, move by exactly what was run (docs/operations.md
names them)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import REGISTRY, Counter
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from llama_mesh.config import RetryConfig, ServiceConfig
from llama_mesh.core.errors import TaskFailedError
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.telemetry import metrics as mesh_metrics
from llama_mesh_gateway import GatewayServer
from llama_mesh_gateway import metrics as gateway_metrics

from mesh_workflows import FailingWorkflow
from processes import ROOT, component

RUN_TASK = "/llama_mesh.v1.ControlPlaneAPI/RunTask"
GET_TASK = "/llama_mesh.v1.ControlPlaneAPI/GetTask"
TASKS = 3
OPERATIONS = ROOT / "docs" / "operations.md"
DASHBOARD = ROOT / "deploy" / "grafana" / "llama-mesh-dashboard.json"


Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient, url: str) -> Scrape:
    resp = await http.get(url)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(resp.text)
        for sample in family.samples
    }


def value(scraped: Scrape, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series not counted yet."""
    return scraped.get((name, frozenset(labels.items())), 0.0)


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@dataclass
class Endpoints:
    control_plane: str
    replica: str
    gateway: str


@pytest.fixture
async def deployed(nats: EmbeddedNats) -> AsyncIterator[tuple[Endpoints, httpx.AsyncClient]]:
    """A control plane and an echo replica, each a process of its own with its own
    /metrics, and a gateway (in this process, which runs nothing else of the mesh)."""
    async with (
        component(
            "serve", "control-plane", "--nats", nats.url, "--metrics-port", "0", ready_timeout=90
        ) as (_, cp),
        component(
            "serve",
            "service",
            "mesh_workflows:EchoWorkflow",
            "--name",
            "echo",
            "--control-plane",
            str(cp["address"]),
            "--metrics-port",
            "0",
            ready_timeout=90,
        ) as (_, replica),
        GatewayServer(str(cp["address"]), port=0, metrics=True) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as http,
    ):
        yield (
            Endpoints(str(cp["metrics"]), str(replica["metrics"]), f"{gateway.url}/metrics"),
            http,
        )


@pytest.mark.timeout(240)
async def test_counters_move_by_exactly_the_tasks_run(
    deployed: tuple[Endpoints, httpx.AsyncClient],
) -> None:
    endpoints, http = deployed
    session = (await http.post("/v1/sessions", json={})).json()["name"]
    urls = (endpoints.control_plane, endpoints.replica, endpoints.gateway)
    cp0, replica0, gw0 = [await scrape(http, url) for url in urls]

    for i in range(TASKS):
        resp = await http.post(
            f"/v1/{session}/tasks:run",
            json={"task": {"service": "echo", "input": {"arg1": str(i)}}},
        )
        assert resp.json()["state"] == "TASK_STATE_SUCCEEDED", resp.text
    missing = await http.get(f"/v1/{session}/tasks/nope")
    assert missing.status_code == 404

    cp1, replica1, gw1 = [await scrape(http, url) for url in urls]
    # The control plane created them and answered the calls, with their codes.
    assert moved(cp0, cp1, "llama_mesh_tasks_created_total", service="echo") == TASKS
    assert moved(cp0, cp1, "llama_mesh_rpcs_total", method=RUN_TASK, code="OK") == TASKS
    assert moved(cp0, cp1, "llama_mesh_rpcs_total", method=GET_TASK, code="NOT_FOUND") == 1
    assert moved(cp0, cp1, "llama_mesh_rpc_duration_seconds_count", method=RUN_TASK) == TASKS
    # The replica ran them: each finished once, queued and timed once, none running now.
    finished = {"service": "echo", "state": "SUCCEEDED"}
    assert moved(replica0, replica1, "llama_mesh_tasks_finished_total", **finished) == TASKS
    assert moved(replica0, replica1, "llama_mesh_task_duration_seconds_count", **finished) == (
        TASKS
    )
    assert moved(replica0, replica1, "llama_mesh_task_queued_seconds_count", service="echo") == (
        TASKS
    )
    assert moved(
        replica0, replica1, "llama_mesh_session_lock_wait_seconds_count", service="echo"
    ) == (TASKS)
    assert value(replica1, "llama_mesh_tasks_running", service="echo") == 0
    assert value(replica1, "llama_mesh_consumer_pending", service="echo") == 0
    # Only the process that recorded a final state counts it: not the control plane.
    assert moved(cp0, cp1, "llama_mesh_tasks_finished_total", **finished) == 0
    # The gateway answered each request once, by method and HTTP status.
    assert moved(gw0, gw1, "llama_mesh_gateway_requests_total", method=RUN_TASK, code="200") == (
        TASKS
    )
    assert moved(gw0, gw1, "llama_mesh_gateway_requests_total", method=GET_TASK, code="404") == 1


async def test_failures_retries_and_dead_letters_are_counted() -> None:
    """In one process (LocalMesh): a task that fails twice and for good is one FAILED
    task, one retry, one redelivery and one dead letter."""
    labels = {"service": "boom"}

    def sample(name: str, **extra: str) -> float:
        return REGISTRY.get_sample_value(name, {**labels, **extra}) or 0.0

    names = [
        ("llama_mesh_tasks_finished_total", {"state": "FAILED"}),
        ("llama_mesh_task_retries_total", {}),
        ("llama_mesh_task_redeliveries_total", {}),
        ("llama_mesh_dead_letters_total", {}),
    ]
    before = [sample(name, **extra) for name, extra in names]
    retry = RetryConfig(
        max_attempts=2, initial_backoff=0.01, max_backoff=0.01, retryable_error_types=["Boom"]
    )
    config = ServiceConfig("boom", retry=retry)
    async with LocalMesh({"boom": (FailingWorkflow(), config)}) as mesh:
        session = await mesh.client.create_session()
        with pytest.raises(TaskFailedError):
            await session.run("boom", message="again")
    after = [sample(name, **extra) for name, extra in names]
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1, 1]


def _families() -> set[str]:
    """The names of the mesh's metric families as scraped (counters with `_total`)."""
    out = set()
    for module in (mesh_metrics, gateway_metrics):
        for item in vars(module).values():
            if isinstance(item, MetricWrapperBase):
                name = item._name
                out.add(f"{name}_total" if isinstance(item, Counter) else name)
    return out


def test_every_metric_is_documented_and_the_dashboard_charts_only_real_ones() -> None:
    families = _families()
    assert len(families) == 16
    documented = set(re.findall(r"^\| `(llama_mesh_\w+)` \|", OPERATIONS.read_text(), re.M))
    assert documented == families
    dashboard = json.loads(DASHBOARD.read_text())
    charted = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"llama_mesh_\w+", target["expr"])
    }
    assert charted <= families, charted - families
    # Everything an operator alerts on is on the dashboard.
    assert {
        "llama_mesh_tasks_finished_total",
        "llama_mesh_dead_letters_total",
        "llama_mesh_consumer_pending",
        "llama_mesh_task_queued_seconds",
        "llama_mesh_rpcs_total",
    } <= charted
