"""How the CLI shows mesh resources: JSON views (`-o json`) and text lines and tables.

print(json.dumps(task_view(task)))
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import timestamp_pb2
from rich import box
from rich.markup import escape
from rich.table import Table

from llama_mesh.client import StreamedEvent
from llama_mesh.core import token_usage
from llama_mesh.core.json_values import to_python
from llama_mesh.core.status import error_text, error_type, status_code
from llama_mesh.core.tracebacks import remote_traceback
from llama_mesh.v1 import resources_pb2


def timestamp(ts: timestamp_pb2.Timestamp) -> str | None:
    return ts.ToJsonString() if ts.seconds or ts.nanos else None


def task_state(task: resources_pb2.Task) -> str:
    return resources_pb2.TaskState.Name(task.state).removeprefix("TASK_STATE_")


def task_view(task: resources_pb2.Task) -> dict[str, Any]:
    """A task as the CLI prints it with -o json."""
    view: dict[str, Any] = {
        "name": task.name,
        "service": task.service,
        "state": task_state(task),
        "input": to_python(task.input) if task.HasField("input") else {},
        "result": to_python(task.result) if task.HasField("result") else None,
        "error": None,
        "attempts": task.attempt_count,
        "parent_task": task.parent_task or None,
        "create_time": timestamp(task.create_time),
        "usage": token_usage.to_json(task.usage) if task.usage.llm_calls else None,
        "end_time": timestamp(task.end_time),
    }
    if task.HasField("error") and task.error.code:
        view["error"] = {
            "type": error_type(task.error),
            "code": status_code(task.error).name,
            "message": task.error.message,
            "traceback": remote_traceback(task.error) or None,
        }
    if task.state == resources_pb2.TASK_STATE_WAITING_FOR_INPUT:
        request = task.input_request
        view["input_request"] = {
            "event_type": request.event_type,
            "payload": to_python(request.payload) if request.HasField("payload") else None,
            "accepted_event_types": list(request.accepted_event_types),
        }
    return view


def event_view(event: StreamedEvent) -> dict[str, Any]:
    view: dict[str, Any] = {
        "sequence": event.sequence,
        "type": event.type,
        "state": event.state,
        "attempt": event.attempt,
        "payload": event.payload,
    }
    if event.error_type or event.error_message:
        view["error"] = {"type": event.error_type, "message": event.error_message}
    return view


def session_view(session: resources_pb2.Session) -> dict[str, Any]:
    return {
        "name": session.name,
        "labels": dict(session.labels),
        "namespace": session.namespace or None,
        "create_time": timestamp(session.create_time),
        "token_budget": session.token_budget or None,
        "usage": token_usage.to_json(session.usage),
    }


def service_view(service: resources_pb2.Service) -> dict[str, Any]:
    replicas = [
        {
            "replica_id": r.replica_id,
            "address": r.address,
            "state": resources_pb2.ReplicaState.Name(r.state).removeprefix("REPLICA_STATE_"),
            "running_tasks": r.running_task_count,
            "max_concurrency": r.max_concurrency,
        }
        for r in service.replicas
    ]
    return {
        "name": service.name.removeprefix("services/"),
        "description": service.description,
        "replicas": replicas,
        "running_tasks": sum(r.running_task_count for r in service.replicas),
        "capacity": sum(r.max_concurrency for r in service.replicas),
    }


def event_line(event: StreamedEvent) -> str:
    payload = "" if event.payload in (None, {}) else " " + json.dumps(event.payload)
    payload = escape(payload if len(payload) < 200 else payload[:197] + "...")
    error = (
        " " + escape(error_text(event.error_type, event.error_message))
        if event.error_message
        else ""
    )
    kind = escape(event.type or event.state)
    # Most events are a running task's: the state is shown where it changes.
    state = "" if event.state in ("RUNNING", "UNSPECIFIED") else f" [dim]{event.state}[/]"
    return f"[dim]#{event.sequence}[/] {kind}{state}{payload}{error}"


SHORT_ID = 8  # characters of a session or task id a table shows (git's short hashes, alike)


def short_task(name: str, cut: tuple[int, int] = (SHORT_ID, SHORT_ID)) -> str:
    """`sessions/{session}/tasks/{task}` as `{session}/{task}`, each id cut to its
    `cut` characters; `-o wide` and `-o json` give the whole name."""
    parts = name.split("/")
    if len(parts) != 4:
        return name
    return f"{_short(parts[1], cut[0])}/{_short(parts[3], cut[1])}"


def _short(ident: str, cut: int) -> str:
    return ident if len(ident) <= cut + 1 else ident[:cut] + "…"


def _cuts(names: list[str]) -> tuple[int, int]:
    """The shortest cuts, from SHORT_ID up, that tell the rows' sessions and tasks apart, as
    git lengthens a short hash that is ambiguous: task ids start with their creation time
    (`18ed2386…`), so tasks created within seconds of each other shared their first 8."""
    split = [name.split("/") for name in names]
    cuts = []
    for index in (1, 3):
        ids = {parts[index] for parts in split if len(parts) == 4}
        cut = SHORT_ID
        while len({i[:cut] for i in ids}) < len(ids):
            cut += 1
        cuts.append(cut)
    return cuts[0], cuts[1]


def tasks_table(tasks: list[dict[str, Any]], title: str, *, wide: bool = False) -> Table:
    """Tasks as a table: 80 columns wide unless `wide` (whole names, whole times)."""
    table = Table(
        title=title + ("" if wide else "  (-o wide: whole names)"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("task", overflow="fold", no_wrap=wide)
    for column in ("service", "state", "tries", "created"):
        table.add_column(column)
    cut = _cuts([t["name"] for t in tasks])
    for t in tasks:
        state = t["state"] + (f" ({t['error']['type']})" if t["error"] else "")
        created = t["create_time"] or ""
        table.add_row(
            t["name"] if wide else short_task(t["name"], cut),
            t["service"],
            state,
            str(t["attempts"]),
            created if wide else created[5:19].replace("T", " "),
        )
    return table
