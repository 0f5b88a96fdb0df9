"""The agent-facing commands (`run` of an agent, `inbox`, `answer`, `sessions get`,
the token budget) given bad input: each prints one actionable `error:` line on stderr
and exits non-zero, with no traceback (docs/cli.md's exit codes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from llama_index.core.agent.workflow import FunctionAgent

from llama_mesh.client import AsyncClient
from llama_mesh.config import ModelConfig
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.worker.models import build_llm, model_client

from .conftest import cli, free_port
from mesh_workflows import ApprovalWorkflow, EchoWorkflow
from processes import Result


@pytest.fixture
async def mesh(nats: EmbeddedNats) -> AsyncIterator[LocalMesh]:
    # The agent's model is never called: every task it is given here is refused.
    config = ModelConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    async with model_client("m", config) as client:
        agent = FunctionAgent(tools=[], llm=build_llm("m", config, async_openai_client=client))
        services = {
            "agent": agent,
            "approval": ApprovalWorkflow(timeout=None),
            "echo": EchoWorkflow(),
        }
        async with LocalMesh(services, nats_url=nats.url) as running:
            yield running


def one_error_line(result: Result, code: int) -> str:
    """The command's only stderr line, once it exited with `code`."""
    assert result.code == code, (result.code, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


async def test_run_of_an_agent_with_a_missing_or_wrong_flag(mesh: LocalMesh) -> None:
    env = {"LLAMA_MESH_CONTROL_PLANE": mesh.address}
    # No user_msg: refused as the task is created (the replica failed it, and `run`
    # printed the task's traceback of the mesh's own frames below the error).
    missing = await cli("run", "agent", env=env)
    assert one_error_line(missing, 2) == (
        "error: InvalidArgumentError: task.input lacks 'user_msg' or 'chat_history': "
        "service 'agent' needs one of them (it has [])"
    )
    async with AsyncClient(mesh.address) as client:
        assert await client.list_tasks() == []  # nothing was queued
    wrong_key = await cli("run", "agent", "--arg", "msg=hi", env=env)
    assert "unknown field(s) ['msg']; service 'agent' accepts" in one_error_line(wrong_key, 2)
    # Click's usage error was five lines: the usage, a hint, the error in a box.
    no_such_option = await cli("run", "agent", "--user-msg", "hi", env=env)
    assert one_error_line(no_such_option, 2) == (
        "error: llama-mesh run: No such option: --user-msg; the task's input goes in "
        "--arg KEY=VALUE (--arg user_msg=…) or --input JSON; `llama-mesh run --help` "
        "lists its options"
    )
    not_a_number = await cli("run", "agent", "--arg", "user_msg=hi", "--timeout", "soon", env=env)
    assert one_error_line(not_a_number, 2).startswith(
        "error: llama-mesh run: Invalid value for '--timeout': "
    )
    no_service = await cli("run", "--arg", "user_msg=hi", env=env)
    assert one_error_line(no_service, 2) == (
        "error: llama-mesh run: Missing argument 'service'; `llama-mesh run --help` lists "
        "its options"
    )


async def test_inbox_against_an_unreachable_control_plane() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = await cli("inbox", "-c", address)
    line = one_error_line(result, 4)
    assert line.startswith(f"error: UnavailableError: cannot reach the control plane at {address}")
    assert "Give its address with --control-plane" in line


async def test_answer_of_an_unknown_task_a_task_not_waiting_and_twice(mesh: LocalMesh) -> None:
    env = {"LLAMA_MESH_CONTROL_PLANE": mesh.address}
    unknown = await cli("answer", "sessions/s/tasks/nope", "yes", env=env)
    assert one_error_line(unknown, 3) == (
        "error: NotFoundError: task 'sessions/s/tasks/nope' not found"
    )
    not_a_name = await cli("answer", "nope", "yes", env=env)
    assert "expected 'sessions/{session}/tasks/{task}'" in one_error_line(not_a_name, 2)

    async with AsyncClient(mesh.address) as client:
        session = await client.create_session()
        done = await session.create_task("echo", input={"arg1": "x"})
        await done.wait()
        asking = await session.create_task("approval", input={"question": "Ship it?"})
        async for event in asking.events():
            if event.state == "WAITING_FOR_INPUT":
                break
    finished = await cli("answer", done.name, "yes", env=env)
    assert one_error_line(finished, 5) == (
        f"error: FailedPreconditionError: task {done.name!r} is not waiting for input: it "
        "has succeeded; only a task in state WAITING_FOR_INPUT takes an answer or an event"
    )
    first = await cli("answer", asking.name, "yes", env=env)
    assert first.code == 0, first.stderr
    again = await cli("answer", asking.name, "yes", env=env)
    # The same answer again: it passed as a retried call and said "answered". Running
    # still, or finished already: either way it says so.
    assert f"task {asking.name!r} is not waiting for input: it " in one_error_line(again, 5)


async def test_sessions_get_of_an_unknown_session_and_a_bad_token_budget(
    mesh: LocalMesh,
) -> None:
    env = {"LLAMA_MESH_CONTROL_PLANE": mesh.address}
    unknown = await cli("sessions", "get", "nope", env=env)
    assert one_error_line(unknown, 3) == "error: NotFoundError: session 'sessions/nope' not found"
    negative = await cli("sessions", "create", "--token-budget", "-5", env=env)
    assert one_error_line(negative, 2) == (
        "error: InvalidArgumentError: session.token_budget is -5: give a number of tokens, "
        "or 0 for no limit"
    )
    not_a_number = await cli("sessions", "create", "--token-budget", "lots", env=env)
    assert one_error_line(not_a_number, 2).startswith(
        "error: llama-mesh sessions create: Invalid value for '--token-budget': "
    )
