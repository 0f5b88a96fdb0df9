"""Prometheus metrics of the mesh's processes (metrics_endpoint.py serves them).

Each process counts what it does itself (prometheus-client's default registry); a
Prometheus server scrapes every process and sums across them. The names, their labels
and what each counts are listed in docs/operations.md; deploy/grafana/llama-mesh-dashboard.json
charts them.

    TASKS_CREATED.labels(service="echo").inc()

prometheus-client adds ``_total`` to a counter's name when it exposes it
(``llama_mesh_tasks_created_total``) and ``_bucket``/``_sum``/``_count`` to a
histogram's.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from llama_mesh.core.lifecycle import state_name
from llama_mesh.core.proto_time import epoch_seconds
from llama_mesh.v1 import resources_pb2

# Seconds, from a quick step to an hour-long task that waits for a person.
TASK_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# Seconds of a gRPC call or a wait that is usually short.
SHORT_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# ---------------------------------------------------------------- tasks (control plane)

TASKS_CREATED = Counter(
    "llama_mesh_tasks_created",
    "Tasks created, by service (a retried create counts once).",
    ["service"],
)

# ---------------------------------------------------------------- tasks (where they end)

TASKS_FINISHED = Counter(
    "llama_mesh_tasks_finished",
    "Tasks that reached a final state, by service and state (SUCCEEDED, FAILED, CANCELLED), "
    "counted by the process that recorded it.",
    ["service", "state"],
)
TASK_DURATION = Histogram(
    "llama_mesh_task_duration_seconds",
    "From a task's creation to its final state, by service and state.",
    ["service", "state"],
    buckets=TASK_SECONDS,
)
DEAD_LETTERS = Counter(
    "llama_mesh_dead_letters",
    "Tasks that failed for good and went to the dead-letter stream.",
    ["service"],
)

# ---------------------------------------------------------------- replicas

TASK_QUEUED = Histogram(
    "llama_mesh_task_queued_seconds",
    "From a task's creation to the start of its first attempt on a replica.",
    ["service"],
    buckets=TASK_SECONDS,
)
TASKS_RUNNING = Gauge(
    "llama_mesh_tasks_running", "Attempts running on this replica now.", ["service"]
)
CONSUMER_PENDING = Gauge(
    "llama_mesh_consumer_pending",
    "Tasks queued for the service and not yet delivered to any replica (the consumer's "
    "lag), as of this replica's last delivery.",
    ["service"],
)
TASKS_WAITING = Gauge(
    "llama_mesh_tasks_waiting_for_input",
    "Tasks on this replica waiting for input (human in the loop) now.",
    ["service"],
)
REDELIVERIES = Counter(
    "llama_mesh_task_redeliveries",
    "Deliveries of a task after its first: a retry after a backoff, a task handed back, or "
    "one whose replica went silent.",
    ["service"],
)
RETRIES = Counter(
    "llama_mesh_task_retries",
    "Attempts that ended without ending the task, which gets another: a retryable "
    "failure, or a replica that handed the task back.",
    ["service"],
)
SESSION_LOCK_WAIT = Histogram(
    "llama_mesh_session_lock_wait_seconds",
    "How long an attempt waited for its session's turn (runs of one service in one "
    "session take turns).",
    ["service"],
    buckets=TASK_SECONDS,
)
LLM_TOKENS = Counter(
    "llama_mesh_llm_tokens",
    "LLM tokens an agent used, by model and kind (input, output).",
    ["model", "kind"],
)

# ---------------------------------------------------------------- gRPC servers

RPCS = Counter(
    "llama_mesh_rpcs",
    "gRPC calls this process served, by method and status code.",
    ["method", "code"],
)
RPC_DURATION = Histogram(
    "llama_mesh_rpc_duration_seconds",
    "How long the gRPC calls this process served took, by method.",
    ["method"],
    buckets=SHORT_SECONDS,
)


def task_finished(task: resources_pb2.Task) -> None:
    """Count `task`, just recorded in its final state: by state, and its duration."""
    state = state_name(task.state)
    TASKS_FINISHED.labels(task.service, state).inc()
    if task.HasField("create_time"):
        TASK_DURATION.labels(task.service, state).observe(
            max(time.time() - epoch_seconds(task.create_time), 0.0)
        )


def attempt_began(task: resources_pb2.Task, attempt: int) -> None:
    """Count attempt `attempt` of `task` beginning: its first ends the task's queueing."""
    if attempt == 1 and task.HasField("create_time"):
        TASK_QUEUED.labels(task.service).observe(
            max(time.time() - epoch_seconds(task.create_time), 0.0)
        )


def tokens_used(usage: resources_pb2.TokenUsage) -> None:
    """Count the tokens of an LLM call, by model (`""` when the LLM names none)."""
    models = usage.models or {"": usage}
    for model, used in models.items():
        LLM_TOKENS.labels(model, "input").inc(used.prompt_tokens)
        LLM_TOKENS.labels(model, "output").inc(used.completion_tokens)
