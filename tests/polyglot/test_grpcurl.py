"""A whole task lifecycle with the grpcurl and buf binaries, through server reflection
alone (no .proto files on the command line), as docs/grpcurl.md shows it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llama_mesh.launch.local import LocalMesh

from .conftest import spawn
from processes import Result, run

CP = "llama_mesh.v1.ControlPlaneAPI"
QUEUE = "llama_mesh.v1.QueueAPI"
# grpcurl exits 64 + the gRPC status code when the call fails.
GRPCURL_EXIT = {"INVALID_ARGUMENT": 67, "NOT_FOUND": 69, "ALREADY_EXISTS": 70,
                "FAILED_PRECONDITION": 73}  # fmt: skip


class Grpcurl:
    """grpcurl -plaintext against the mesh's control plane."""

    def __init__(self, path: str, address: str) -> None:
        self.path = path
        self.address = address

    def argv(self, *args: str, data: dict[str, Any] | None = None) -> list[str]:
        flags = ["-d", json.dumps(data)] if data is not None else []
        return [self.path, "-plaintext", *flags, self.address, *args]

    async def __call__(self, *args: str, data: dict[str, Any] | None = None) -> Result:
        return await run(*self.argv(*args, data=data))

    async def ok(self, method: str, data: dict[str, Any] | None = None) -> Any:
        return (await self(method, data=data or {})).check().json()


@pytest.fixture
def grpc(grpcurl: str, mesh: LocalMesh) -> Grpcurl:
    return Grpcurl(grpcurl, mesh.address)


@pytest.mark.timeout(60)
async def test_reflection_lists_and_describes_the_apis(grpc: Grpcurl) -> None:
    services = (await grpc("list")).check().stdout.split()
    assert {CP, QUEUE, "grpc.health.v1.Health"} <= set(services)

    methods = (await grpc("list", CP)).check().stdout.split()
    for method in ("RunTask", "CreateTask", "StreamTaskEvents", "SendTaskEvent", "CancelTask"):
        assert f"{CP}.{method}" in methods

    service = (await grpc("describe", CP)).check().stdout
    assert "rpc RunTask ( .llama_mesh.v1.RunTaskRequest )" in service
    assert "returns ( stream .llama_mesh.v1.StreamTaskEventsResponse )" in service

    task = (await grpc("describe", "llama_mesh.v1.Task")).check().stdout
    assert "message Task {" in task
    assert ".llama_mesh.v1.TaskState state = 4" in task

    health = await grpc.ok("grpc.health.v1.Health/Check")
    assert health == {"status": "SERVING"}


@pytest.mark.timeout(90)
async def test_task_lifecycle(grpc: Grpcurl) -> None:
    # A session with an id of our choosing.
    created = await grpc.ok(f"{CP}/CreateSession", {"session_id": "grpcurl-demo"})
    assert created["session"]["name"] == "sessions/grpcurl-demo"
    assert created["created"] is True
    parent = "sessions/grpcurl-demo"

    # Run a task and wait for it in one call.
    ran = await grpc.ok(
        f"{CP}/RunTask", {"parent": parent, "task": {"service": "echo", "input": {"arg1": "hi"}}}
    )
    assert ran["task"]["state"] == "TASK_STATE_SUCCEEDED"
    assert ran["task"]["result"] == "hi_result"
    echo_task = ran["task"]["name"]

    # Create a task, then stream its events to the end.
    streaming = await grpc.ok(
        f"{CP}/CreateTask", {"parent": parent, "task": {"service": "stream", "input": {"n": 3}}}
    )
    name = streaming["task"]["name"]
    assert streaming["task"]["state"] == "TASK_STATE_PENDING"
    events = (await grpc(f"{CP}/StreamTaskEvents", data={"name": name})).check()
    stream = [item["event"] for item in _values(events.stdout)]
    assert [e["type"] for e in stream] == ["Progress", "Progress", "Progress", "StopEvent"]
    assert [e["payload"] for e in stream[:3]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert stream[-1]["state"] == "TASK_STATE_SUCCEEDED"
    assert stream[-1]["payload"] == 3
    sequences = [int(e["sequence"]) for e in stream]
    assert sequences == sorted(sequences)

    # Resume after the second event: only what came after it.
    resumed = (
        await grpc(f"{CP}/StreamTaskEvents", data={"name": name, "after_sequence": sequences[1]})
    ).check()
    assert [int(v["event"]["sequence"]) for v in _values(resumed.stdout)] == sequences[2:]

    # Human in the loop: stream until the task asks, answer it, see it finish.
    approval = await grpc.ok(
        f"{CP}/CreateTask",
        {"parent": parent, "task": {"service": "approval", "input": {"question": "Ship it?"}}},
    )
    name = approval["task"]["name"]
    async with spawn(*grpc.argv(f"{CP}/StreamTaskEvents", data={"name": name})) as events_of:
        asked = await events_of.until(
            lambda v: v["event"].get("state") == "TASK_STATE_WAITING_FOR_INPUT"
        )
        assert asked["event"]["type"] == "InputRequiredEvent"
        assert asked["event"]["payload"]["prefix"] == "Ship it?"
        waiting = await grpc.ok(f"{CP}/GetTask", {"name": name})
        assert waiting["task"]["state"] == "TASK_STATE_WAITING_FOR_INPUT"
        assert waiting["task"]["input_request"]["event_type"] == "InputRequiredEvent"
        sent = await grpc.ok(
            f"{CP}/SendTaskEvent",
            {"name": name, "type": "HumanResponseEvent", "payload": {"response": "yes"}},
        )
        assert sent["task"]["state"] == "TASK_STATE_RUNNING"
        last = await events_of.until(lambda v: v["event"].get("type") == "StopEvent")
        assert last["event"]["state"] == "TASK_STATE_SUCCEEDED"
        assert last["event"]["payload"] == {"answer": "yes"}
        assert await events_of.process.wait() == 0

    # Cancel a running task: its stream ends CANCELLED with the reason.
    slow = await grpc.ok(
        f"{CP}/CreateTask",
        {"parent": parent, "task": {"service": "slow", "input": {"seconds": 60}}},
    )
    name = slow["task"]["name"]
    async with spawn(*grpc.argv(f"{CP}/StreamTaskEvents", data={"name": name})) as events_of:
        await events_of.until(lambda v: v["event"].get("type") == "SlowStarted")
        cancelled = await grpc.ok(f"{CP}/CancelTask", {"name": name, "reason": "changed my mind"})
        assert cancelled.get("already_finished") is None  # false: grpcurl hides defaults
        last = await events_of.until(lambda v: v["event"].get("type") == "StopEvent")
        assert last["event"]["state"] == "TASK_STATE_CANCELLED"
        assert last["event"]["error"]["code"] == 1  # CANCELLED
        assert last["event"]["error"]["message"] == "changed my mind"
        assert await events_of.process.wait() == 0
    again = await grpc.ok(f"{CP}/CancelTask", {"name": name})
    assert again["already_finished"] is True
    assert again["task"]["state"] == "TASK_STATE_CANCELLED"

    # The session lists its tasks, newest first.
    listed = await grpc.ok(f"{CP}/ListTasks", {"parent": parent})
    assert [t["service"] for t in listed["tasks"]] == ["slow", "approval", "stream", "echo"]

    # Sending an event into a finished task is refused.
    refused = await grpc(
        f"{CP}/SendTaskEvent",
        data={"name": echo_task, "type": "HumanResponseEvent", "payload": {"response": "no"}},
    )
    assert refused.code == GRPCURL_EXIT["FAILED_PRECONDITION"], refused
    assert "Code: FailedPrecondition" in refused.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("method", "data", "code"),
    [
        ("GetTask", {"name": "bogus"}, "INVALID_ARGUMENT"),
        ("GetTask", {"name": "sessions/grpcurl-demo/tasks/nope"}, "NOT_FOUND"),
        ("GetSession", {"name": "sessions/nope"}, "NOT_FOUND"),
        ("CreateSession", {"session_id": "taken"}, "ALREADY_EXISTS"),
        ("CreateSession", {"session_id": "not a valid id!"}, "INVALID_ARGUMENT"),
        ("RunTask", {"parent": "sessions/taken", "task": {"service": "nope"}}, "NOT_FOUND"),
        ("RunTask", {"parent": "sessions/taken", "task": {"service": "Bad!"}}, "INVALID_ARGUMENT"),
        ("RunTask", {"parent": "sessions/taken", "task": {}}, "INVALID_ARGUMENT"),
        ("RunTask", {"parent": "sessions/nope", "task": {"service": "echo"}}, "NOT_FOUND"),
        ("StreamTaskEvents", {"name": "sessions/taken/tasks/nope"}, "NOT_FOUND"),
        ("CancelTask", {"name": "sessions/taken/tasks/nope"}, "NOT_FOUND"),
    ],
)
async def test_bad_input_gets_its_status_code(
    grpc: Grpcurl, method: str, data: dict[str, Any], code: str
) -> None:
    await grpc.ok(f"{CP}/CreateSession", {"session_id": "taken"})
    result = await grpc(f"{CP}/{method}", data=data)
    assert result.code == GRPCURL_EXIT[code], result
    camel = "".join(part.capitalize() for part in code.split("_"))
    assert f"Code: {camel}" in result.stderr


@pytest.mark.timeout(30)
async def test_a_field_the_schema_lacks_is_refused_by_grpcurl_itself(grpc: Grpcurl) -> None:
    # Reflection gives grpcurl the schema, so a typo never reaches the server.
    result = await grpc(f"{CP}/GetTask", data={"nmae": "sessions/a/tasks/b"})
    assert result.code == 1
    assert "nmae" in result.stderr


@pytest.mark.timeout(60)
async def test_queue_api_topics(grpc: Grpcurl) -> None:
    await grpc.ok(f"{CP}/CreateSession", {"session_id": "q"})
    await grpc.ok(f"{CP}/RunTask", {"parent": "sessions/q", "task": {"service": "echo"}})
    topics = await grpc.ok(f"{QUEUE}/ListTopics")
    by_name = {t["name"]: t for t in topics["topics"]}
    assert "echo" in " ".join(by_name["topics/tasks.echo"]["consumer_groups"])
    # A consumer following many topics (the control plane's of every task's end) is none.
    assert not [name for name in by_name if "*" in name or ">" in name], by_name
    bad = await grpc(f"{QUEUE}/Subscribe", data={"topic": "nope", "consumer_group": "g"})
    assert bad.code == GRPCURL_EXIT["INVALID_ARGUMENT"], bad


@pytest.mark.timeout(60)
async def test_buf_curl_runs_a_task_through_reflection(buf: str, mesh: LocalMesh) -> None:
    base = f"http://{mesh.address}"
    curl = [buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge"]

    methods = (await run(*curl, "--list-methods", base)).check().stdout.split()
    assert f"{CP}/RunTask" in methods
    assert f"{QUEUE}/Subscribe" in methods

    session = (
        await run(*curl, "-d", json.dumps({"session_id": "buf"}), f"{base}/{CP}/CreateSession")
    ).check()
    assert session.json()["session"]["name"] == "sessions/buf"
    request = {"parent": "sessions/buf", "task": {"service": "echo", "input": {"arg1": "hi"}}}
    ran = (await run(*curl, "-d", json.dumps(request), f"{base}/{CP}/RunTask")).check().json()
    assert ran["task"]["state"] == "TASK_STATE_SUCCEEDED"
    assert ran["task"]["result"] == "hi_result"

    events = (
        await run(*curl, "-d", json.dumps({"name": ran["task"]["name"]}),
                  f"{base}/{CP}/StreamTaskEvents")
    ).check()  # fmt: skip
    assert [v["event"]["state"] for v in _values(events.stdout)] == ["TASK_STATE_SUCCEEDED"]

    # buf curl prints the error as JSON and exits 8 * the code (NOT_FOUND = 5).
    missing = await run(
        *curl, "-d", json.dumps({"name": "sessions/buf/tasks/nope"}), f"{base}/{CP}/GetTask"
    )
    assert missing.code == 40, missing
    assert json.loads(missing.stderr)["code"] == "not_found"


def _values(text: str) -> list[Any]:
    """The JSON values grpcurl or buf curl print one after another."""
    decoder = json.JSONDecoder()
    values, text = [], text.lstrip()
    while text:
        value, end = decoder.raw_decode(text)
        values.append(value)
        text = text[end:].lstrip()
    return values
