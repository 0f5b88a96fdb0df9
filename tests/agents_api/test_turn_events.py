"""Following a turn's events (Turns.events, jetstream/live_events.py): from the task's
first event, in order, none lost and none twice, without a consumer per turn, and
ended with UNAVAILABLE when the control plane shuts down.

Live messages are lost at the exact point where they arrive (the follower's
subscription callback), or held back there and delivered late, as a dropped
connection or a slow reader would have it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats as nats_py
import pytest
from nats.aio.msg import Msg
from nats.js import api as js_api

from llama_mesh.cli.target import EXIT_UNAVAILABLE
from llama_mesh.control_plane.agents_api.turns import Turns
from llama_mesh.core.errors import UnavailableError
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.live_events import LiveEvents, StoredEvent
from llama_mesh.jetstream.topology import Topology
from llama_mesh.launch.nats_server import EmbeddedNats

from processes import CLI, component, run


async def _publish(state: MeshState, task_id: str, n: int, *, final: bool = False) -> int:
    """Publish event `n` of the task (its last if `final`); its stream sequence."""
    topology = state.topology
    subject = topology.final_event_subject if final else topology.event_subject
    ack = await state.js.publish(subject(task_id), f"event {n}".encode())
    return int(ack.seq)


def _turns(state: MeshState, shutting_down: asyncio.Event, live: LiveEvents) -> Turns:
    unused: Any = None  # following events needs neither sessions nor tasks
    return Turns(state, sessions=unused, tasks=unused, shutting_down=shutting_down, live=live)


def _live_messages(
    state: MeshState, monkeypatch: pytest.MonkeyPatch, take: Callable[[Msg], bool]
) -> list[Callable[[Msg], Awaitable[None]]]:
    """From now on, a live message reaches its follower only if `take(msg)`; the
    followers' own callbacks, to hand one on later."""
    subscribe = state.nc.subscribe
    callbacks: list[Callable[[Msg], Awaitable[None]]] = []

    async def hooked(subject: str, cb: Any = None, **kwargs: Any) -> Any:
        if cb is not None and ".live." in subject:
            deliver = cb
            callbacks.append(deliver)

            async def cb(msg: Msg) -> None:
                if take(msg):
                    await deliver(msg)

        return await subscribe(subject, cb=cb, **kwargs)

    monkeypatch.setattr(state.nc, "subscribe", hooked)
    return callbacks


def _number(msg: Msg) -> int:
    return int(msg.data.decode().split()[1])


async def _read(events: AsyncIterator[StoredEvent], n: int) -> list[StoredEvent]:
    return [await asyncio.wait_for(anext(events), 10) for _ in range(n)]


async def _consumers(state: MeshState) -> int:
    info = await state.js.stream_info(state.topology.event_stream)
    return int(info.state.consumer_count)


async def test_a_turns_events_from_its_first_then_unavailable_at_shutdown(
    nats: EmbeddedNats,
) -> None:
    async with MeshState.connect([nats.url]) as state, LiveEvents.following(state) as live:
        shutting_down = asyncio.Event()
        turns = _turns(state, shutting_down, live)
        await _publish(state, "t1", 1)  # before the stream: read from the stream
        await _publish(state, "t2", 1)  # another task's: not read
        async with turns.events("t1", history=True) as events:
            assert (await anext(events)).data == b"event 1"
            await _publish(state, "t1", 2)
            second = await anext(events)
            assert (second.data, second.newest, second.final) == (b"event 2", True, False)
            waiting = asyncio.ensure_future(anext(events))
            shutting_down.set()
            with pytest.raises(UnavailableError, match="shutting down"):
                await waiting
        # A stream that starts during the shutdown ends at once, the same way.
        async with turns.events("t1", history=True) as events:
            with pytest.raises(UnavailableError):
                async for _ in events:
                    pass


async def test_a_new_turn_is_followed_without_a_consumer(nats: EmbeddedNats) -> None:
    async with MeshState.connect([nats.url]) as state, LiveEvents.following(state) as live:
        turns = _turns(state, asyncio.Event(), live)
        async with turns.events("t1", history=False) as events:
            sequences = [await _publish(state, "t1", n) for n in (1, 2)]
            await _publish(state, "t2", 1)
            sequences.append(await _publish(state, "t1", 3, final=True))
            read = await _read(events, 3)
            assert [(e.seq, e.data, e.final) for e in read] == [
                (sequences[0], b"event 1", False),
                (sequences[1], b"event 2", False),
                (sequences[2], b"event 3", True),
            ]
            assert await _consumers(state) == 0


async def test_events_lost_live_are_read_from_the_stream_in_order_once(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first event, one in the middle and the one just before the last are lost
    live; another task's events come in between, so the last event's sequence is not
    next to the one before it."""
    async with MeshState.connect([nats.url]) as state:
        lost = {1, 3, 5}
        _live_messages(state, monkeypatch, lambda msg: _number(msg) not in lost)
        async with (
            LiveEvents.following(state) as live,
            live.follow("t1", history=False, stop=asyncio.Event()) as events,
        ):
            sequences = []
            for n in range(1, 6):
                sequences.append(await _publish(state, "t1", n))
                await _publish(state, "t2", n)
            sequences.append(await _publish(state, "t1", 6, final=True))
            read = await _read(events, 6)
        assert [e.seq for e in read] == sequences
        assert [e.data for e in read] == [f"event {n}".encode() for n in range(1, 7)]
        assert read[-1].final


async def test_an_event_read_from_the_stream_and_delivered_live_later_is_handed_on_once(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection came back (the reconnect hook) while event 2 was still on its
    way: what was stored meanwhile is read, and event 2 arriving after is dropped."""
    async with MeshState.connect([nats.url]) as state:
        held: list[Msg] = []
        arrived = asyncio.Event()

        def take(msg: Msg) -> bool:
            if _number(msg) != 2:
                return True
            held.append(msg)
            arrived.set()
            return False

        callbacks = _live_messages(state, monkeypatch, take)
        async with (
            LiveEvents.following(state) as live,
            live.follow("t1", history=False, stop=asyncio.Event()) as events,
        ):
            await _publish(state, "t1", 1)
            assert (await anext(events)).data == b"event 1"
            await _publish(state, "t1", 2)
            await asyncio.wait_for(arrived.wait(), 10)  # its live copy is held back
            for hook in state.reconnect_hooks:
                await hook()
            caught_up = await asyncio.wait_for(anext(events), 10)
            assert (caught_up.data, caught_up.newest) == (b"event 2", True)
            await callbacks[0](held[0])  # the late live copy of event 2
            await _publish(state, "t1", 3, final=True)
            last = await asyncio.wait_for(anext(events), 10)
            assert (last.data, last.final) == (b"event 3", True)


async def test_a_resumed_follow_reads_what_came_before_and_then_what_comes(
    nats: EmbeddedNats,
) -> None:
    async with MeshState.connect([nats.url]) as state, LiveEvents.following(state) as live:
        first = await _publish(state, "t1", 1)
        await _publish(state, "t1", 2)
        async with live.follow("t1", history=True, stop=asyncio.Event()) as events:
            before = await _read(events, 2)
            assert [(e.data, e.newest) for e in before] == [(b"event 1", False), (b"event 2", True)]
            await _publish(state, "t1", 3)
            assert (await anext(events)).data == b"event 3"
        # From a sequence on: what the caller saw is not read again.
        async with live.follow("t1", after=first, history=True, stop=asyncio.Event()) as events:
            assert [e.data for e in await _read(events, 2)] == [b"event 2", b"event 3"]


async def test_a_last_event_never_republished_is_read_once_the_stream_has_a_new_leader(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream leader that stops between storing an event and republishing it leaves
    it unannounced: the next leader's election (its advisory) has followers read it."""
    async with MeshState.connect([nats.url]) as state:
        _live_messages(state, monkeypatch, lambda msg: not msg.subject.endswith(".end"))
        async with (
            LiveEvents.following(state) as live,
            live.follow("t1", history=False, stop=asyncio.Event()) as events,
        ):
            await _publish(state, "t1", 1)
            assert (await asyncio.wait_for(anext(events), 10)).data == b"event 1"
            await _publish(state, "t1", 2, final=True)
            waiting = asyncio.ensure_future(anext(events))
            await asyncio.sleep(0)
            assert not waiting.done()
            stream = state.topology.event_stream
            await state.nc.publish(f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{stream}", b"{}")
            last = await asyncio.wait_for(waiting, 10)
            assert (last.data, last.final, last.newest) == (b"event 2", True, True)


async def test_a_last_event_lost_live_with_nothing_after_it_is_read_once_the_follower_is_idle(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live message lost with neither a reconnect nor a new leader (a route between
    cluster nodes that broke and came back) and no later one to show the gap, as a
    task's last: the follower, idle for `idle_check`, asks the stream and reads it."""
    async with MeshState.connect([nats.url]) as state:
        _live_messages(state, monkeypatch, lambda msg: not msg.subject.endswith(".end"))
        async with (
            LiveEvents.following(state, idle_check=0.2) as live,
            live.follow("t1", history=False, stop=asyncio.Event()) as events,
        ):
            await _publish(state, "t1", 1)
            assert (await asyncio.wait_for(anext(events), 10)).data == b"event 1"
            await _publish(state, "t1", 2, final=True)
            last = await asyncio.wait_for(anext(events), 10)  # before: timed out
            assert (last.data, last.final, last.newest) == (b"event 2", True, True)


async def test_a_catch_up_with_nothing_missed_reads_no_stream(
    nats: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a reconnect or an election every follower catches up at once: one that
    missed nothing makes no consumer to read the stream (one message get says so)."""
    stop = asyncio.Event()
    async with (
        MeshState.connect([nats.url]) as state,
        LiveEvents.following(state) as live,
        live.follow("t1", history=False, stop=stop) as events,
    ):
        await _publish(state, "t1", 1)
        assert (await asyncio.wait_for(anext(events), 10)).data == b"event 1"
        reads: list[str] = []
        subscribe = state.js.subscribe

        async def counted(subject: str, **kwargs: Any) -> Any:
            reads.append(subject)
            return await subscribe(subject, **kwargs)

        monkeypatch.setattr(state.js, "subscribe", counted)
        await live.catch_up()
        stop.set()  # the follower ends once it has caught up
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(events), 10)
        assert reads == []  # before: one read of the stream


async def test_a_control_plane_refuses_to_start_on_an_event_stream_without_the_republish(
    nats: EmbeddedNats,
) -> None:
    """Followers would wait for ever: the control plane stops at start, saying what is
    missing and how to give it back, in every case (it said "see the warning about it
    above", which only one of them logs). Raised as it is in use: the stream exists with
    a config JetStream will not bring up to this version's (in memory here), so
    Topology.ensure keeps it, with a warning. The republish alone, as the message's
    `nats stream edit` gives it, is enough to start."""
    topology = Topology()
    nc = await nats_py.connect(nats.url)
    js = nc.jetstream()
    try:
        await js.add_stream(
            js_api.StreamConfig(
                name=topology.event_stream,
                subjects=[f"{topology.prefix}.events.>", f"{topology.prefix}.input.>"],
                storage=js_api.StorageType.MEMORY,
            )
        )
        refused = await run(str(CLI), "serve", "control-plane", "--nats", nats.url, timeout=60)
        assert refused.code == EXIT_UNAVAILABLE, refused.stderr
        assert "Traceback" not in refused.stderr
        # It ended with a traceback: JetStream refuses such an update as a 500.
        assert (
            "stream MESH_EVENTS exists with another config; keeping it (stream "
            "configuration update can not change storage type)"
        ) in refused.stderr
        assert refused.stderr.splitlines()[-1] == (
            "error: control plane: stream MESH_EVENTS does not republish mesh.events.> on "
            "mesh.live.>, where event streams and streamed turns follow their tasks: stop "
            "every control plane of an earlier version (one takes the republish away as it "
            "starts), give the stream that republish (nats stream edit MESH_EVENTS "
            "--republish-source 'mesh.events.>' --republish-destination 'mesh.live.>') and "
            "start again"
        )
        config = (await js.stream_info(topology.event_stream)).config
        config.republish = js_api.RePublish(src="mesh.events.>", dest="mesh.live.>")
        await js.update_stream(config)  # what the edit does
    finally:
        await nc.close()
    async with component("serve", "control-plane", "--nats", nats.url) as (_, ready):
        assert ready["component"] == "control-plane"


async def test_an_update_that_drops_the_republish_is_undone_and_followers_go_on(
    nats: EmbeddedNats,
) -> None:
    """A control plane of an earlier version that starts during a rolling upgrade
    updates the event stream to its own config, without the republish (its
    Topology.ensure): followers would hear nothing more, not even a task's last event.
    The republish is given back and what was stored without it is read."""
    async with MeshState.connect([nats.url]) as state, LiveEvents.following(state) as live:
        async with live.follow("t1", history=False, stop=asyncio.Event()) as events:
            await _publish(state, "t1", 1)
            assert (await asyncio.wait_for(anext(events), 10)).data == b"event 1"
            info = await state.js.stream_info(state.topology.event_stream)
            config = info.config
            config.republish = None
            await state.js.update_stream(config)
            await _publish(state, "t1", 2)
            await _publish(state, "t1", 3, final=True)
            rest = await _read(events, 2)  # before: timed out
            assert [(e.data, e.final) for e in rest] == [(b"event 2", False), (b"event 3", True)]
        info = await state.js.stream_info(state.topology.event_stream)
        assert info.config.republish == state.topology.event_republish
