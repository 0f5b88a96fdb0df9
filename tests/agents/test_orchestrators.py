"""Orchestrators: tasks that name no service, routed through the mesh by a pipeline
(here) or a model (test_agents_on_the_mesh.py); each decision an event, each hop a child
task."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from llama_mesh.client import AsyncClient, TaskHandle
from llama_mesh.config import ServiceConfig
from llama_mesh.core.errors import FailedPreconditionError, InvalidArgumentError, TaskFailedError
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.orchestrators import (
    DECISION,
    HOP_FINISHED,
    Decision,
    Finish,
    Hop,
    Next,
    Orchestrator,
    OrchestratorWorkflow,
    Pipeline,
    Run,
    Step,
)
from llama_mesh.v1 import resources_pb2

from agent_services import BrokenWorkflow, CombineWorkflow, DraftWorkflow, PublishWorkflow, human
from mesh_workflows import EchoWorkflow


async def child_tasks(client: AsyncClient, parent: TaskHandle) -> list[resources_pb2.Task]:
    """The parent's children, oldest first."""
    tasks = await client.list_tasks(parent.name.split("/tasks/")[0])
    children = [t for t in tasks if t.parent_task == parent.name]
    return sorted(children, key=lambda t: t.create_time.ToNanoseconds())


def task_input(task: resources_pb2.Task) -> dict[str, Any]:
    return json_format.MessageToDict(task.input)


async def test_a_pipeline_with_a_human_step_feeds_each_output_to_the_next_step(
    nats: EmbeddedNats,
) -> None:
    services = {"draft": DraftWorkflow(), "reviewer": human, "publish": PublishWorkflow()}
    pipeline = Pipeline(["draft", "reviewer", "publish"])
    async with LocalMesh(services, nats_url=nats.url, orchestrator=pipeline) as mesh:
        client = mesh.client
        session = await client.create_session()
        handle = await session.create_task("", user_msg="llamas")
        assert (await handle.get()).service == "orchestrator"
        # The pipeline waits at the human step until a person answers.
        async for event in handle.events():
            created = event.type == "llama_mesh.ChildTaskCreated"
            if created and event.payload["service"] == "reviewer":
                review = client.task(event.payload["task"])
                break
        async for event in review.events():
            if event.state == "WAITING_FOR_INPUT":
                assert event.payload["question"] == "Draft about llamas."
                break
        await client.answer(review.name, "Approved: Draft about llamas.")
        assert await handle.result() == {"published": "Approved: Draft about llamas."}

        draft, reviewed, published = await child_tasks(client, handle)
        chain = (draft.service, reviewed.service, published.service)
        assert chain == ("draft", "reviewer", "publish")
        assert task_input(draft) == {"topic": "llamas"}
        assert task_input(reviewed) == {"question": "Draft about llamas."}
        assert task_input(published) == {"text": "Approved: Draft about llamas."}

        events = [e async for e in handle.events()]
        decisions = [e.payload for e in events if e.type == "llama_mesh.OrchestratorDecision"]
        assert [d["finish"] for d in decisions] == [False, False, False, True]
        assert [d["hops"][0]["service"] for d in decisions[:3]] == ["draft", "reviewer", "publish"]
        assert decisions[0]["reason"] == "step 1 of 3: draft"
        finished = [e.payload for e in events if e.type == "llama_mesh.HopFinished"]
        assert [(h["service"], h["ok"], h["result"]) for h in finished] == [
            ("draft", True, "Draft about llamas."),
            ("reviewer", True, "Approved: Draft about llamas."),
            ("publish", True, {"published": "Approved: Draft about llamas."}),
        ]
        # Each hop is announced before it ends, and decided before it is announced.
        kinds = [e.type for e in events if e.type != "StopEvent"]
        hop = [DECISION, "llama_mesh.ChildTaskCreated", HOP_FINISHED]
        assert kinds == [*hop, *hop, *hop, DECISION]


async def test_a_failed_step_fails_the_pipeline_naming_the_step(nats: EmbeddedNats) -> None:
    services = {"draft": DraftWorkflow(), "broken": BrokenWorkflow()}
    pipeline = Pipeline(["draft", Step("broken", input_key="text"), Step("draft", id="again")])
    async with LocalMesh(services, nats_url=nats.url, orchestrator=pipeline) as mesh:
        with pytest.raises(TaskFailedError) as raised:
            await mesh.client.run("llamas")
        assert raised.value.error_type == "PipelineStepFailedError"
        assert raised.value.task.error.message == (
            "PipelineStepFailedError: step 2 of 3 (broken) failed: "
            "ValueError: cannot handle 'Draft about llamas.'"
        )


async def test_a_value_that_fits_no_input_field_is_a_clear_error(nats: EmbeddedNats) -> None:
    # `echo` reads ev.get("arg1") and declares no fields: where would the draft go?
    services = {"draft": DraftWorkflow(), "echo": EchoWorkflow()}
    async with LocalMesh(
        services, nats_url=nats.url, orchestrator=Pipeline(["draft", "echo"])
    ) as mesh:
        with pytest.raises(TaskFailedError) as raised:
            await mesh.client.run("llamas")
        assert raised.value.error_type == "PipelineInputError"
        assert "give the step an input_key" in raised.value.task.error.message
    async with LocalMesh(
        services, nats_url=nats.url, orchestrator=Pipeline(["draft", Step("echo", "arg1")])
    ) as mesh:
        assert await mesh.client.run("llamas") == "Draft about llamas._result"


async def test_a_task_naming_no_service_needs_exactly_one_orchestrator(
    nats: EmbeddedNats,
) -> None:
    async with LocalMesh({"draft": DraftWorkflow()}, nats_url=nats.url) as mesh:
        with pytest.raises(InvalidArgumentError, match="no orchestrator is deployed"):
            await mesh.client.run("llamas")
        await mesh.add_service(OrchestratorWorkflow(Pipeline(["draft"])), _config("one"))
        assert await mesh.client.run("llamas") == "Draft about llamas."
        await mesh.add_service(OrchestratorWorkflow(Pipeline(["draft"])), _config("two"))
        with pytest.raises(FailedPreconditionError, match=r"\['one', 'two'\]"):
            await mesh.client.run("llamas")
        # Naming one still works.
        session = await mesh.client.create_session()
        assert await session.run("two", user_msg="alpacas") == "Draft about alpacas."


def _config(name: str) -> ServiceConfig:
    return ServiceConfig(name)


class Fanout(Orchestrator):
    """Asks every routable service at once, then finishes with all their answers."""

    async def next_hops(self, run: Run) -> Decision:
        if run.results:
            return Finish({r.hop.service: r.result for r in run.results}, reason="all answered")
        return Next([Hop(s.name, {"topic": run.user_msg}) for s in run.services], reason="all")


async def test_a_custom_orchestrator_runs_hops_concurrently(nats: EmbeddedNats) -> None:
    services = {"draft": DraftWorkflow(), "draft2": DraftWorkflow()}
    async with LocalMesh(services, nats_url=nats.url, orchestrator=Fanout()) as mesh:
        assert await mesh.client.run("llamas") == {
            "draft": "Draft about llamas.",
            "draft2": "Draft about llamas.",
        }


async def test_a_pipeline_dag_runs_independent_steps_at_once_and_joins_them(
    nats: EmbeddedNats,
) -> None:
    services = {"facts": DraftWorkflow(), "jokes": DraftWorkflow(), "combine": CombineWorkflow()}
    dag = Pipeline(
        [Step("facts"), Step("jokes", after=()), Step("combine", after=("facts", "jokes"))]
    )
    async with LocalMesh(services, nats_url=nats.url, orchestrator=dag) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task("", user_msg="llamas")
        assert await handle.result() == "Draft about llamas. / Draft about llamas."
        decisions = [
            e.payload async for e in handle.events() if e.type == "llama_mesh.OrchestratorDecision"
        ]
        # One decision starts both independent steps; the join waits for both.
        assert [sorted(h["service"] for h in d["hops"]) for d in decisions] == [
            ["facts", "jokes"],
            ["combine"],
            [],
        ]
        [joined] = [t for t in await child_tasks(mesh.client, handle) if t.service == "combine"]
        assert task_input(joined) == {
            "facts": "Draft about llamas.",
            "jokes": "Draft about llamas.",
        }


def test_a_step_follows_only_steps_listed_before_it() -> None:
    with pytest.raises(ValueError, match=r"follows \['later'\]"):
        Pipeline([Step("first", after=("later",)), Step("later")])
    with pytest.raises(ValueError, match="two steps are named 'draft'"):
        Pipeline(["draft", "draft"])
    assert Pipeline(["draft", Step("draft", id="again")]).last == ["again"]
