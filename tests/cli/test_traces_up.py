"""Traces across processes: `llama-mesh up` with `otel:` exports every process's spans
over OTLP/gRPC to a collector the test runs (a real TraceService server from
opentelemetry-proto, on a free port), and one task through the gateway is one trace
across the gateway, the control plane and both services' replicas."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from .conftest import llama_mesh_up, quickstart, write_deployment


@dataclass
class Exported:
    service: str  # the resource's service.name
    instance: str  # its service.instance.id
    span: trace_pb2.Span


@dataclass
class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span exported to it."""

    spans: list[Exported] = field(default_factory=list)

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            attributes = {
                kv.key: kv.value.string_value for kv in resource_spans.resource.attributes
            }
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Exported(
                            attributes.get("service.name", ""),
                            attributes.get("service.instance.id", ""),
                            span,
                        )
                    )
        return trace_service_pb2.ExportTraceServiceResponse()


@contextlib.asynccontextmanager
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    """A collector on a free port, and its endpoint."""
    kept = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(kept, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield kept, f"http://127.0.0.1:{port}"
    finally:
        await server.stop(None)


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
