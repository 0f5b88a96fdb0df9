"""A client streaming a task's events (StreamTaskEvents) while the control plane's NATS
connection goes away and comes back gets every event, in order and once, as soon as
it is back (the stream follows the task with control_plane's LiveEvents, which reads
what was stored meanwhile on a reconnect).

The fault: the embedded nats-server stops and starts again on its port and data
directory, so every connection reconnects, while the stream is open."""

from __future__ import annotations

import asyncio
from pathlib import Path

from workflows import Context, Workflow, step
from workflows.events import Event, StartEvent, StopEvent

from llama_mesh.client import StreamedEvent
from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats


class Progress(Event):
    step: int


class ReportsWhenReleased(Workflow):
    """Reports one progress event, waits for `release`, reports another and ends."""

    def __init__(self, release: asyncio.Event) -> None:
        super().__init__()
        self.release = release

    @step
    async def work(self, ctx: Context, ev: StartEvent) -> StopEvent:
        ctx.write_event_to_stream(Progress(step=1))
        await self.release.wait()
        ctx.write_event_to_stream(Progress(step=2))
        return StopEvent(result="done")


def _step(event: StreamedEvent) -> int | None:
    payload = event.payload
    return payload.get("step") if isinstance(payload, dict) else None


async def test_a_task_event_stream_goes_on_at_once_when_nats_is_back(tmp_path: Path) -> None:
    release = asyncio.Event()
    data = tmp_path / "nats"
    nats = await EmbeddedNats.launch(data)
    try:
        async with LocalMesh({"held": ReportsWhenReleased(release)}, nats_url=nats.url) as mesh:
            session = await mesh.client.create_session()
            handle = await session.create_task("held")
            events = handle.events()
            seen: list[StreamedEvent] = []
            async with asyncio.timeout(30):
                async for event in events:
                    seen.append(event)
                    if _step(event) == 1:
                        break
            port = nats.port
            await nats.stop()
            nats = await EmbeddedNats.launch(data, port=port)
            release.set()
            # Before: an ordered consumer per stream, gone with the server's memory,
            # was made again only once it had missed two heartbeats (10-20 s).
            async with asyncio.timeout(8):
                seen += [event async for event in events]
            sequences = [e.sequence for e in seen]
            assert sequences == sorted(set(sequences))  # in order, none twice
            assert [_step(e) for e in seen if _step(e)] == [1, 2]
            assert seen[-1].final
            assert (await handle.result()) == "done"
    finally:
        await nats.stop()
