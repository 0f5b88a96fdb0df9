"""The answers of a waiting task, on a real JetStream: taken in order, each once,
whether stored before the task listened, arriving live, or missed by the subscription
(NATS was away) and found again on a recheck."""

from __future__ import annotations

import asyncio

from workflows.events import HumanResponseEvent

from llama_mesh.core.json_values import to_struct
from llama_mesh.core.names import TaskName, new_id
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.topology import Topology
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.task_inputs import TaskInputs

TASK = TaskName("s1", "t1")


def make_event(type_name: str, payload: dict[str, object]) -> HumanResponseEvent:
    assert type_name == "HumanResponseEvent"
    return HumanResponseEvent(**payload)


async def send(state: MeshState, response: str) -> None:
    """What SendTaskEvent stores: an envelope on the task's input subject."""
    envelope = resources_pb2.Envelope(
        id=new_id(),
        task_input=resources_pb2.TaskInput(
            task=str(TASK),
            type="HumanResponseEvent",
            payload=to_struct({"response": response}, "payload"),
        ),
    )
    await state.js.publish(
        state.topology.input_subject(TASK.task_id),
        envelope.SerializeToString(),
        headers={"Nats-Msg-Id": envelope.id},
    )


async def test_stored_answers_are_taken_in_order_each_once(nats: EmbeddedNats) -> None:
    async with MeshState.connect([nats.url], Topology()) as state:
        await send(state, "first")
        await send(state, "second")
        inputs = TaskInputs(state, TASK, make_event)
        assert (await inputs.stored()).response == "first"  # type: ignore[union-attr]
        assert (await inputs.stored()).response == "second"  # type: ignore[union-attr]
        assert await inputs.stored() is None
        # A new attempt reads them again from the start.
        again = TaskInputs(state, TASK, make_event)
        assert (await again.stored()).response == "first"  # type: ignore[union-attr]


async def test_a_live_answer_is_taken_once_though_it_is_also_stored(nats: EmbeddedNats) -> None:
    async with MeshState.connect([nats.url], Topology()) as state:
        inputs = TaskInputs(state, TASK, make_event)
        subscription = await inputs.subscribe()
        waiting = asyncio.create_task(inputs.next(subscription))
        await send(state, "live")
        assert (await waiting).response == "live"
        # The stream has it too; it is not an answer to the next question.
        assert await inputs.stored() is None
        await subscription.unsubscribe()


class CutOff:
    """A subscription cut off while NATS was away: it hears nothing."""

    def __init__(self) -> None:
        self.listening = asyncio.Event()

    async def next_msg(self, timeout: float | None = None) -> None:
        self.listening.set()
        await asyncio.Event().wait()


async def test_an_answer_the_subscription_missed_is_found_on_recheck(nats: EmbeddedNats) -> None:
    async with MeshState.connect([nats.url], Topology()) as state:
        inputs = TaskInputs(state, TASK, make_event)
        cut_off = CutOff()
        waiting = asyncio.create_task(inputs.next(cut_off))  # type: ignore[arg-type]
        await cut_off.listening.wait()  # nothing stored: it listens
        await send(state, "sent meanwhile")
        inputs.recheck()  # what the runtime does when the connection is back
        assert (await waiting).response == "sent meanwhile"
