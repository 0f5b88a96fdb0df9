"""Following a turn's events (Turns.events): from the task's first event, in order,
and ended with UNAVAILABLE when the control plane shuts down."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llama_mesh.control_plane.agents_api.turns import Turns
from llama_mesh.core.errors import UnavailableError
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.launch.nats_server import EmbeddedNats


async def _publish(state: MeshState, task_id: str, n: int) -> None:
    subject = state.topology.task_events(task_id).replace("*", f"e{n}")
    await state.js.publish(subject, f"event {n}".encode())


async def test_a_turns_events_from_its_first_then_unavailable_at_shutdown(
    nats: EmbeddedNats,
) -> None:
    async with MeshState.connect([nats.url]) as state:
        shutting_down = asyncio.Event()
        # Following events needs neither sessions nor tasks.
        unused: Any = None
        turns = Turns(state, sessions=unused, tasks=unused, shutting_down=shutting_down)
        await _publish(state, "t1", 1)  # before the stream: read from the first
        await _publish(state, "t2", 1)  # another task's: not read
        async with turns.events("t1") as messages:
            assert (await anext(messages)).data == b"event 1"
            await _publish(state, "t1", 2)
            assert (await anext(messages)).data == b"event 2"
            waiting = asyncio.ensure_future(anext(messages))
            shutting_down.set()
            with pytest.raises(UnavailableError, match="shutting down"):
                await waiting
        # A stream that starts during the shutdown ends at once, the same way.
        async with turns.events("t1") as messages:
            with pytest.raises(UnavailableError):
                async for _ in messages:
                    pass
