"""Traces across processes: `llama-mesh up` with `otel:` exports every process's spans
over OTLP/gRPC to a collector the test runs (a real TraceService server from
opentelemetry-proto, on a free port), and one task through the gateway is one trace
across the gateway, the control plane and both services' replicas."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from otlp_collector import collector

from .conftest import llama_mesh_up, quickstart, write_deployment


@pytest.mark.timeout(180)
async def test_up_exports_one_trace_across_its_processes(tmp_path: Path) -> None:
    async with collector() as (kept, endpoint):
        data = quickstart(tmp_path, services=["inner", "outer"])
        data["otel"] = {"endpoint": endpoint, "service_name_prefix": "demo-"}
        file = write_deployment(tmp_path / "deployment.yaml", data)
        async with llama_mesh_up(file, log=tmp_path / "up.log") as up:
            auth = {"authorization": f"Bearer {up.token}"}
            async with httpx.AsyncClient(
                base_url=up.summary["gateway"], headers=auth, timeout=60
            ) as http:
                session = (await http.post("/v1/sessions", json={})).json()["name"]
                ran = await http.post(
                    f"/v1/{session}/tasks:run",
                    json={"task": {"service": "outer", "input": {"arg1": "hi"}}},
                )
            assert ran.status_code == 200, ran.text
            assert ran.json()["result"] == "hi_result_result"
            # Every process flushes its spans as it stops.
            assert await up.stop() == 0

    requests = [e for e in kept.spans if e.span.name == "POST /v1/{parent=sessions/*}/tasks:run"]
    assert [e.service for e in requests] == ["demo-gateway"]
    trace_id = requests[0].span.trace_id
    in_trace = [e for e in kept.spans if e.span.trace_id == trace_id]
    # One tree across the processes: one root (the request), every parent in the trace.
    ids = {e.span.span_id for e in in_trace}
    assert [e.span.name for e in in_trace if not e.span.parent_span_id] == [requests[0].span.name]
    assert all(not e.span.parent_span_id or e.span.parent_span_id in ids for e in in_trace)
    by_service: dict[str, set[str]] = {}
    for e in in_trace:
        by_service.setdefault(e.service, set()).add(e.span.name)
    assert set(by_service) == {"demo-gateway", "demo-control-plane", "demo-outer", "demo-inner"}
    assert {"task.create", "/llama_mesh.v1.ControlPlaneAPI/RunTask"} <= by_service[
        "demo-control-plane"
    ]
    assert {"task.attempt", "workflow.step run_step", "session.turn"} <= by_service["demo-outer"]
    assert {"task.attempt", "context.save"} <= by_service["demo-inner"]
    # A replica's spans say which replica ran them.
    attempts = [e for e in in_trace if e.span.name == "task.attempt"]
    assert all(e.instance for e in attempts)
