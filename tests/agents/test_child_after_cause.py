"""A child task exists only once the event that asked for it is stored on its parent's
stream (issue 14): an agent's ToolCall before the tool's child task, a workflow's event
before the nested workflow it then awaits. Otherwise a replica that crashed in between
would leave a child whose cause is on no stream, and a reader of the parent's stream
(the Agents API's turns) could see a tool's result with no call before it. Likewise an
event a step publishes directly (an orchestrator's decision) comes after the events the
step wrote into the workflow's stream before it.

The fault is injected at the exact point (core/failpoints.py): from the moment the
model answers with the tool call (or the step has written its event), the store gives
no answer to event publishes (`journal.publish_many`; the outbox waits that out with the
events in hand). The store answers again only once the call has either created its
child (`task_creation.recorded`: the fault) or waits for the events before it
(`child_tasks.awaiting_cause`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Annotated

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.llms.openai_like import OpenAILike
from nats.js.errors import NoStreamResponseError
from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent
from workflows.resource import Resource

from llama_mesh.client import AsyncSession, TaskHandle
from llama_mesh.core.failpoints import armed
from llama_mesh.core.names import TaskName
from llama_mesh.jetstream.event_history import events_so_far
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.testing import RecordedRequest, Reply, ScriptedModel, ToolCall
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.child_tasks import call_service, publish_event
from llama_mesh.worker.mesh_tools import MeshTools

from agent_services import SECRET_FACT, secret_tools

CHILD_TASK_CREATED = "llama_mesh.ChildTaskCreated"


class HeldStore:
    """Once `hold` is called, event publishes get no answer until `release`; records,
    for each task created after `hold` (the parent's children), whether the store was
    held then."""

    def __init__(self) -> None:
        self.held = False
        self.began = False  # tasks created before are not children
        self.created_while_held: list[bool] = []
        self.child_created = asyncio.Event()
        self.caller_waits = asyncio.Event()

    def hold(self) -> None:
        self.held = self.began = True

    def release(self) -> None:
        self.held = False

    def no_answer(self) -> None:
        if self.held:
            raise NoStreamResponseError

    def created(self) -> None:
        if not self.began:
            return
        self.created_while_held.append(self.held)
        self.child_created.set()


# Called by ParentWorkflow once its step has written its event.
AFTER_EVENT: list[Callable[[], None]] = []


@contextlib.contextmanager
def held_store() -> Iterator[HeldStore]:
    store = HeldStore()
    AFTER_EVENT[:] = [store.hold]
    try:
        with (
            armed("journal.publish_many", store.no_answer),
            armed("task_creation.recorded", store.created),
            armed("child_tasks.awaiting_cause", store.caller_waits.set),
        ):
            yield store
    finally:
        store.release()
        AFTER_EVENT.clear()


async def release_once_the_call_waits(store: HeldStore) -> None:
    """Wait until the call waits for its cause (or created its child: the fault), then
    let the store answer."""
    waits = asyncio.ensure_future(store.caller_waits.wait())
    created = asyncio.ensure_future(store.child_created.wait())
    try:
        await asyncio.wait([waits, created], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waits.cancel()
        created.cancel()
    assert not store.child_created.is_set(), (
        "the child task was created while the event that asked for it was not stored"
    )
    store.release()


async def stream(mesh: LocalMesh, task: str) -> list[resources_pb2.TaskEvent]:
    """The task's events as its stream holds them, in stream order."""
    assert mesh.control_plane is not None
    state = mesh.control_plane.state
    return await events_so_far(state.js, state.topology, TaskName.parse(task).task_id)


async def children(session: AsyncSession, parent: TaskHandle) -> list[resources_pb2.Task]:
    return [t for t in await session.list_tasks() if t.parent_task == parent.name]


# ---------------------------------------------------------------- an agent's tool call


def agent(url: str) -> FunctionAgent:
    llm = OpenAILike(
        model="scripted",
        api_base=url,
        api_key="none",
        is_chat_model=True,
        is_function_calling_model=True,
        max_retries=0,
        timeout=60,
    )
    return FunctionAgent(name="agent", tool_retriever=MeshTools("secret_tools"), llm=llm)


async def test_an_agents_tool_call_is_stored_before_its_child_task_exists(
    nats: EmbeddedNats, model: ScriptedModel, model_url: str
) -> None:
    with held_store() as store:

        def respond(request: RecordedRequest) -> Reply:
            if request.messages[-1]["role"] == "tool":
                return Reply("It is a cria.")
            store.hold()  # the ToolCall this answer makes is written after this
            return Reply(tool_calls=[ToolCall("get_the_secret_fact", {})])

        model.respond_with(respond)
        services = {"secret_tools": secret_tools, "agent": agent(model_url)}
        async with LocalMesh(services, nats_url=nats.url) as mesh:
            session = await mesh.client.create_session()
            run = await session.create_task("agent", user_msg="What is the secret fact?")
            await release_once_the_call_waits(store)
            await run.result()
            [child] = await children(session, run)
            events = await stream(mesh, run.name)
        assert store.created_while_held == [False]
        # The stream's own order: the call, the child it made, the child's result.
        types = [e.type.rpartition(".")[2] for e in events]
        assert types.index("ToolCallStarted") < types.index("ChildTaskCreated")
        assert types.index("ChildTaskCreated") < types.index("ToolCallCompleted")
        [announced] = [e for e in events if e.type == CHILD_TASK_CREATED]
        assert announced.payload.struct_value.fields["task"].string_value == child.name
        assert child.result.string_value == SECRET_FACT


# ---------------------------------------------------------------- a nested workflow


class Asked(Event):
    question: str


class AnswerWorkflow(Workflow):
    @step
    async def answer(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=f"answered: {ev.get('question')}")


class ParentWorkflow(Workflow):
    """Writes an event saying what it asks, then awaits the `answer` service."""

    @step
    async def ask(
        self,
        ctx: Context,
        ev: StartEvent,
        answer: Annotated[AnswerWorkflow, Resource(AnswerWorkflow)],
    ) -> StopEvent:
        ctx.write_event_to_stream(Asked(question="why?"))
        for hook in AFTER_EVENT:
            hook()
        return StopEvent(result=await answer.run(question="why?"))


async def test_a_workflows_event_is_stored_before_the_nested_workflow_it_awaits(
    nats: EmbeddedNats,
) -> None:
    services = {"answer": AnswerWorkflow(), "parent": ParentWorkflow()}
    async with LocalMesh(services, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        with held_store() as store:
            run = await session.create_task("parent")
            await release_once_the_call_waits(store)
            assert await run.result() == "answered: why?"
        assert store.created_while_held == [False]
        [child] = await children(session, run)
        events = await stream(mesh, run.name)
        types = [e.type.rpartition(".")[2] for e in events]
        assert types == ["Asked", "ChildTaskCreated", "StopEvent"]
        assert child.service == "answer"


class CallsAnswer(Workflow):
    """Writes an event, then calls the `answer` service as a child of the running task."""

    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(Asked(question="how?"))
        return StopEvent(result=await call_service("answer", {"question": "how?"}))


class RunsInProcess(Workflow):
    """Runs CallsAnswer in-process inside its step; nobody reads that run's stream."""

    @step
    async def run_inner(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await CallsAnswer().run())


async def test_a_call_from_a_run_whose_stream_the_task_does_not_read_goes_on(
    nats: EmbeddedNats,
) -> None:
    # Its event is not the task's; a mark in that stream would never be reached.
    services = {"answer": AnswerWorkflow(), "outer": RunsInProcess()}
    async with LocalMesh(services, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        assert await session.run("outer", timeout=60) == "answered: how?"


# ---------------------------------------------------------------- an event published directly


class Token(Event):
    n: int


class DecideAfterTokens(Workflow):
    """Writes Token events, then at once publishes a decision, as an orchestrator does
    (not through the workflow's stream)."""

    @step
    async def decide(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for n in range(20):
            ctx.write_event_to_stream(Token(n=n))
        await publish_event("test.Decision", {"after": 20})
        return StopEvent(result="decided")


async def test_an_event_a_step_publishes_comes_after_the_events_it_wrote(
    nats: EmbeddedNats,
) -> None:
    async with LocalMesh({"decide": DecideAfterTokens()}, nats_url=nats.url) as mesh:
        session = await mesh.client.create_session()
        run = await session.create_task("decide")
        assert await run.result() == "decided"
        events = await stream(mesh, run.name)
    types = [e.type.rpartition(".")[2] for e in events]
    assert types == ["Token"] * 20 + ["Decision", "StopEvent"]
