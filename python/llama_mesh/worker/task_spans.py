"""The spans of a task on a replica: its time in the queue, the attempt, and the
workflow's runs and steps (telemetry/tracing.py has the rest of the trace).

``attempt_span`` continues the trace of the task's creator, whose context the
assignment's NATS headers carry: a ``task.queued`` span (publish to this delivery)
and a ``task.attempt`` span, both children of the creator's ``task.create``.

workflows dispatches a span around each run (its id ``{Workflow}.run-{uuid}``, the
workflow as its instance) and one around each invocation of a step (a child of the
run's, ``{Workflow}.{step}-{uuid}``). ``StepSpans``, a span handler on llama-index's root
dispatcher, turns those two kinds, and none of the many others llama-index dispatches,
into spans ``workflow.run {Workflow}`` and ``workflow.step {step}``, each current while
it runs: a child task a step creates (a nested workflow, a tool call) carries the
step's trace context. ``install()`` adds it once per process; with tracing off it
makes nothing.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from typing import Any

from llama_index_instrumentation import get_dispatcher
from llama_index_instrumentation.span.base import BaseSpan
from llama_index_instrumentation.span_handlers.base import BaseSpanHandler
from nats.aio.msg import Msg
from workflows import Workflow
from workflows.errors import WorkflowCancelledByUser

from llama_mesh.core import proto_time
from llama_mesh.telemetry import tracing
from llama_mesh.v1 import resources_pb2


def attempt_span(
    msg: Msg, envelope: resources_pb2.Envelope, service: str, replica_id: str
) -> contextlib.AbstractContextManager[Any]:
    """The span of one delivery of a task on this replica (nothing when tracing is off)."""
    creator = tracing.extract(msg.headers)
    if creator is None:
        return tracing.span("task.attempt")  # tracing is off, or the message untraced
    about: dict[str, str | int] = {
        "llama_mesh.task": envelope.task_assignment.task.name,
        "llama_mesh.service": service,
        "llama_mesh.replica": replica_id,
        "llama_mesh.delivery": int(msg.metadata.num_delivered),
    }
    if envelope.HasField("publish_time"):
        published = proto_time.epoch_seconds(envelope.publish_time)
        tracing.record_span("task.queued", published, time.time(), parent=creator, **about)
    return tracing.span("task.attempt", parent=creator, kind="CONSUMER", **about)


_UUID_SUFFIX = len("-00000000-0000-0000-0000-000000000000")


class _Open(BaseSpan):
    """A llama-index span with the OpenTelemetry span made for it."""

    otel: Any = None
    token: Any = None
    run: bool = False


class StepSpans(BaseSpanHandler[_Open]):
    """Spans of workflow runs and steps (see the module's doc)."""

    @classmethod
    def class_name(cls) -> str:
        return "LlamaMeshStepSpans"

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> _Open | None:
        tracer = tracing.tracer()
        if tracer is None:
            return None
        from opentelemetry import context, trace

        if isinstance(instance, Workflow):
            workflow = type(instance).__name__
            otel = tracer.start_span(
                f"workflow.run {workflow}", attributes={"llama_mesh.workflow": workflow}
            )
            run = True
        else:
            parent = self.open_spans.get(parent_span_id or "")
            if parent is None or not parent.run:
                return None  # not a step: an LLM call, a tool, a query engine...
            qualified = id_[:-_UUID_SUFFIX]
            workflow, _, step = qualified.rpartition(".")
            otel = tracer.start_span(
                f"workflow.step {step}",
                context=trace.set_span_in_context(parent.otel),
                attributes={"llama_mesh.workflow": workflow, "llama_mesh.step": step},
            )
            run = False
        token = context.attach(trace.set_span_in_context(otel))
        return _Open(id_=id_, parent_id=parent_span_id, otel=otel, token=token, run=run)

    def prepare_to_exit_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> _Open | None:
        return self._end(id_, None)

    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> _Open | None:
        return self._end(id_, err)

    def _end(self, id_: str, err: BaseException | None) -> _Open | None:
        open_span = self.open_spans.get(id_)
        if open_span is None:
            return None
        from opentelemetry import context, trace

        context.detach(open_span.token)
        if err is not None and not isinstance(err, WorkflowCancelledByUser):
            open_span.otel.record_exception(err)
            open_span.otel.set_status(trace.Status(trace.StatusCode.ERROR, str(err)))
        open_span.otel.end()
        return open_span


_installed: StepSpans | None = None


def install() -> None:
    """Add the handler to llama-index's root dispatcher (once per process)."""
    global _installed
    if _installed is None:
        _installed = StepSpans()
        get_dispatcher().add_span_handler(_installed)
