"""OpenTelemetry traces, in one process: the real SDK with an in-memory exporter.

A task through the gateway (real HTTP) to a real control plane and replicas (LocalMesh)
whose workflow calls another deployed service as a child task yields one trace, one
tree: gateway -> control plane -> task.create -> (NATS) -> task.attempt -> workflow
step -> child's task.create -> child's attempt. With tracing off nothing is recorded
and the queued task carries no trace context.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from otlp_collector import collector
from pydantic import ValidationError

from llama_mesh.config import OtelConfig
from llama_mesh.core.errors import TaskFailedError
from llama_mesh.launch.local import LocalMesh
from llama_mesh.telemetry import tracing
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import control_plane_pb2_grpc, queue_pb2_grpc, resources_pb2
from llama_mesh.v1 import queue_pb2 as q
from llama_mesh_gateway import GatewayServer
from llama_mesh_gateway import tracing as gateway_tracing

from mesh_workflows import FailingWorkflow, InnerWorkflow, make_outer


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Every span this process records while the test runs (mesh and gateway alike)."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with tracing.use_provider(provider), gateway_tracing.use_provider(provider):
        yield spans
    provider.shutdown()


@pytest.fixture
def no_tracing() -> Iterator[InMemorySpanExporter]:
    """An exporter nothing uses: tracing stays off (and must stay off)."""
    assert not tracing.enabled() and not gateway_tracing.enabled()
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield spans
    provider.shutdown()


# A client's own trace, continued by the gateway (W3C trace context).
CLIENT_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CLIENT_SPAN = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{CLIENT_TRACE:032x}-{CLIENT_SPAN:016x}-01"


async def run_outer_through_gateway() -> tuple[str, list[str]]:
    """Run `outer` (which calls `inner` as a child task) through the gateway, as part
    of the client's trace TRACEPARENT; its result and the trace context headers its
    queued assignments carried. Every component has stopped (its spans ended) when
    this returns."""
    async with (
        LocalMesh({"inner": InnerWorkflow(), "outer": make_outer()}) as mesh,
        GatewayServer(mesh.address, port=0) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as http,
    ):
        assert mesh.control_plane is not None
        state = mesh.control_plane.state
        # What the control plane queues for each service, headers included.
        queued = await state.nc.subscribe(state.topology.task_subject("*"))
        session = (await http.post("/v1/sessions", json={})).json()["name"]
        resp = await http.post(
            f"/v1/{session}/tasks:run",
            json={"task": {"service": "outer", "input": {"arg1": "x"}}},
            headers={"traceparent": TRACEPARENT},
        )
        assert resp.status_code == 200, resp.text
        result = resp.json()["result"]
        carried = []
        for _ in ("outer", "inner"):
            msg = await queued.next_msg(timeout=10)
            carried.append((msg.headers or {}).get("traceparent", ""))
        await queued.unsubscribe()
    return result, carried


def tree(spans: Sequence[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    """The names of `span`'s ancestors in this process, nearest first."""
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


def only(spans: Sequence[ReadableSpan], name: str, **attributes: str) -> ReadableSpan:
    found = [
        s
        for s in spans
        if s.name == name
        and all((s.attributes or {}).get(f"llama_mesh.{k}") == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, attributes, [s.name for s in spans])
    return found[0]


@pytest.mark.timeout(90)
async def test_one_task_through_the_gateway_is_one_tree(exporter: InMemorySpanExporter) -> None:
    result, carried = await run_outer_through_gateway()
    assert result == "x_result_result"
    assert all(header.startswith("00-") for header in carried)

    spans = exporter.get_finished_spans()
    request = [s for s in spans if s.name == "POST /v1/{parent=sessions/*}/tasks:run"]
    assert len(request) == 1
    root = request[0]
    # The request continues the client's trace: its parent is the client's span.
    assert root.kind is SpanKind.SERVER and root.parent is not None
    assert (root.parent.span_id, root.parent.is_remote) == (CLIENT_SPAN, True)
    trace_id = root.context.trace_id
    assert trace_id == CLIENT_TRACE
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    by_id = tree(in_trace)
    # One tree: every span's parent is in the trace, but the request's (the client's).
    assert [s for s in in_trace if s.parent is None] == []
    for span in in_trace:
        assert span is root or (span.parent and span.parent.span_id in by_id), span.name

    outer_task = only(in_trace, "task.create", service="outer")
    inner_task = only(in_trace, "task.create", service="inner")
    outer_attempt = only(in_trace, "task.attempt", service="outer")
    inner_attempt = only(in_trace, "task.attempt", service="inner")
    outer_step = only(in_trace, "workflow.step run_step", workflow="OuterWorkflow")
    inner_step = only(in_trace, "workflow.step run_step", workflow="InnerWorkflow")
    run_task = "/llama_mesh.v1.ControlPlaneAPI/RunTask"
    create_task = "/llama_mesh.v1.ControlPlaneAPI/CreateTask"

    # gateway -> (gRPC) control plane -> task.create -> (NATS) -> the replica's attempt
    assert ancestors(outer_task, by_id) == [run_task, run_task, root.name]
    assert ancestors(outer_attempt, by_id) == ["task.create", run_task, run_task, root.name]
    assert outer_attempt.kind is SpanKind.CONSUMER
    assert (outer_attempt.attributes or {})["llama_mesh.state"] == "SUCCEEDED"
    assert outer_attempt.status.status_code is StatusCode.UNSET
    assert (outer_attempt.attributes or {})["llama_mesh.replica"]
    # ... -> the workflow's step -> the child task, created from inside the step
    step_path = ancestors(outer_step, by_id)
    assert step_path[: step_path.index("task.attempt") + 1] == [
        "workflow.run OuterWorkflow",
        "task.attempt",
    ]
    assert ancestors(inner_task, by_id)[:3] == [create_task, create_task, outer_step.name]
    assert outer_step.context.span_id in {
        s.parent.span_id for s in in_trace if s.name == create_task and s.parent
    }
    assert ancestors(inner_attempt, by_id)[0] == "task.create"
    assert inner_attempt.parent is not None
    assert inner_attempt.parent.span_id == inner_task.context.span_id
    assert "task.attempt" in ancestors(inner_step, by_id)
    # The attempt's phases: queued (a sibling), its session turn, the Context saved.
    names_under_attempt = {
        s.name
        for s in in_trace
        if s.parent is not None and s.parent.span_id == outer_attempt.context.span_id
    }
    assert {"session.turn", "context.save"} <= names_under_attempt
    queued = only(in_trace, "task.queued", service="outer")
    assert queued.parent is not None
    assert queued.parent.span_id == outer_task.context.span_id


@pytest.mark.timeout(60)
async def test_a_failed_attempt_says_why_on_its_span(exporter: InMemorySpanExporter) -> None:
    async with LocalMesh({"fail": FailingWorkflow()}) as mesh:
        session = await mesh.client.create_session()
        with pytest.raises(TaskFailedError):
            await session.run("fail", message="no luck")
    spans = exporter.get_finished_spans()
    attempt = only(spans, "task.attempt", service="fail")
    assert (attempt.attributes or {})["llama_mesh.state"] == "FAILED"
    assert attempt.status.status_code is StatusCode.ERROR
    assert attempt.status.description == "Boom: no luck"
    step = only(spans, "workflow.step fail", workflow="FailingWorkflow")
    assert step.status.status_code is StatusCode.ERROR
    assert [e.name for e in step.events] == ["exception"]


@pytest.mark.timeout(60)
async def test_a_queue_api_service_gets_the_trace_to_continue(
    exporter: InMemorySpanExporter,
) -> None:
    """A service in another language takes its tasks over the Queue API: each
    delivery carries the creator's W3C trace context for its own propagator."""
    async with (
        LocalMesh() as mesh,
        grpc.aio.insecure_channel(mesh.address) as channel,
    ):
        await control_plane_pb2_grpc.ControlPlaneAPIStub(channel).RegisterService(
            cp.RegisterServiceRequest(
                service=resources_pb2.Service(name="services/remote"),
                replica=resources_pb2.Replica(replica_id="r1", runtime="test"),
            )
        )
        session = await mesh.client.create_session()
        await session.create_task("remote", text="hi")
        stream: Any = queue_pb2_grpc.QueueAPIStub(channel).Subscribe(
            q.SubscribeRequest(topic="topics/tasks.remote", consumer_group="remote")
        )
        response: q.SubscribeResponse = await stream.read()
        stream.cancel()
    created = only(exporter.get_finished_spans(), "task.create", service="remote")
    carried = response.message.trace_context["traceparent"]
    assert carried.startswith(f"00-{created.context.trace_id:032x}-{created.context.span_id:016x}-")


@pytest.mark.timeout(90)
async def test_nothing_is_traced_when_tracing_is_off(no_tracing: InMemorySpanExporter) -> None:
    result, carried = await run_outer_through_gateway()
    assert result == "x_result_result"
    assert carried == ["", ""]  # the queued tasks carry no trace context
    assert no_tracing.get_finished_spans() == ()
    assert tracing.server_interceptors() == [] and tracing.client_interceptors() == []


def test_the_otel_variables_decide_whether_a_process_exports() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    assert not tracing.configured({})
    assert tracing.configured(endpoint)
    assert not tracing.configured({**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not tracing.configured({**endpoint, "OTEL_TRACES_EXPORTER": "none"})
    assert tracing.configure_tracing("control-plane", environ={}) is None
    assert gateway_tracing.configure_tracing({}) is None


def test_the_otel_section_becomes_the_standard_variables() -> None:
    settings = OtelConfig(
        endpoint="http://collector:4318",
        protocol="http/protobuf",
        headers={"x-api-key": "a b"},
        service_name_prefix="shop-",
        sample_ratio=0.25,
    )
    assert settings.environment("echo") == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=a%20b",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_SERVICE_NAME": "shop-echo",
    }
    assert OtelConfig().environment("echo") == {}  # up's own OTEL_* variables apply
    with pytest.raises(ValidationError, match="is not an http:// or https:// URL"):
        OtelConfig(endpoint="127.0.0.1:4317")
    with pytest.raises(ValidationError):
        OtelConfig(endpoint="http://127.0.0.1:4317", sample_ratio=1.5)


_DEPLOYED = """
import asyncio, sys
from llama_mesh.client import AsyncClient
from llama_mesh.launch.deploy import (
    ControlPlaneConfig, NatsQueueConfig, WorkflowServiceConfig, deploy_core, deploy_workflow,
)
from mesh_workflows import EchoWorkflow

async def main() -> None:
    cp = ControlPlaneConfig(port=int(sys.argv[2]))
    core_ready, echo_ready = asyncio.Event(), asyncio.Event()
    core = asyncio.create_task(
        deploy_core(cp, NatsQueueConfig(data_dir=sys.argv[1], port=-1), ready=core_ready)
    )
    await core_ready.wait()
    echo = asyncio.create_task(
        deploy_workflow(EchoWorkflow(), WorkflowServiceConfig("echo"), cp, ready=echo_ready)
    )
    await echo_ready.wait()
    async with AsyncClient(cp.url) as client:
        session = await client.create_session()
        print(await session.run("echo", arg1="traced"))
    for task in (echo, core):
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

asyncio.run(main())
"""


@pytest.mark.timeout(120)
async def test_deploy_helpers_export_where_the_otel_variables_say(tmp_path: Path) -> None:
    """deploy_core and deploy_workflow (one process here) trace to the OTLP collector
    OTEL_EXPORTER_OTLP_ENDPOINT names, and flush as they stop."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with collector() as (kept, endpoint):
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "PYTHONPATH": str(Path(__file__).parent),
        }
        env.pop("OTEL_SERVICE_NAME", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _DEPLOYED,
            str(tmp_path / "nats"),
            str(port),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        out, _ = await proc.communicate()
    assert (proc.returncode, out.decode().strip()) == (0, "traced_result")
    attempt = [e for e in kept.spans if e.span.name == "task.attempt"]
    assert len(attempt) == 1
    in_trace = {e.span.name for e in kept.spans if e.span.trace_id == attempt[0].span.trace_id}
    assert {"task.create", "task.attempt", "workflow.step run_step", "context.save"} <= in_trace
    # The process's first component set its resource: the one provider serves both.
    assert {e.service for e in kept.spans} == {"llama-mesh-control-plane"}
