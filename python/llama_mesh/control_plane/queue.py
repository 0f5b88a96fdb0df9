"""The Queue API: the mesh's JetStream subjects over gRPC, for those without NATS.

A topic is a subject without the mesh prefix (`tasks.echo`, `events.{task_id}`).
Subscribe binds a durable pull consumer named after the consumer group; its members
share the messages. On a service's tasks topic that is the service's own consumer,
placed by the registry's rule (registry.py: the ack wait asked for applies only when
no other replica is live), and each message says the ack wait to keep it alive by.

An ack id is the message's JetStream reply subject signed for the subscriber and its
topic (ack_ids.py), so any control-plane replica can ack, nak or extend it, and nobody
else's ack id (or a made-up one) does anything.

Nothing a client or a service publishes here becomes a task, an event or an answer:
tasks are created by CreateTask, answers sent by SendTaskEvent, and what happens to a
task is reported through the attempt RPCs (attempts.py); Publish on those topics is
for admins only, and on events topics for no one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator

import grpc
from google.protobuf import timestamp_pb2
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api as js_api
from nats.js.errors import NotFoundError as JsNotFoundError

from llama_mesh.control_plane.ack_ids import ACK, IN_PROGRESS, AckIdSigner, nak
from llama_mesh.control_plane.attempts import TaskAttempts
from llama_mesh.control_plane.registry import ServiceRegistry, asked_ack_wait
from llama_mesh.core import proto_time
from llama_mesh.core.errors import InvalidArgumentError, PermissionDeniedError
from llama_mesh.core.limits import MAX_ENVELOPE_BYTES, MAX_ID_CHARS, check_bytes, check_chars
from llama_mesh.core.names import TaskName, check_service_id, new_id
from llama_mesh.core.paging import page_size, paginate
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.errors import store_errors
from llama_mesh.jetstream.journal import task_key
from llama_mesh.jetstream.pull_consumer import PullConsumer
from llama_mesh.jetstream.service_consumer import DEFAULT_ACK_WAIT
from llama_mesh.jetstream.topology import ensure_consumer
from llama_mesh.rpc.identity import caller
from llama_mesh.telemetry import tracing
from llama_mesh.v1 import queue_pb2 as q
from llama_mesh.v1 import queue_pb2_grpc, resources_pb2

logger = logging.getLogger(__name__)


_TOPIC = re.compile(r"(tasks|events|input|dead)\.([A-Za-z0-9_-]{1,128})")
_GROUP = re.compile(r"[A-Za-z0-9_-]{1,64}")


def parse_topic(name: str, field: str = "topic") -> tuple[str, str]:
    """`topics/tasks.echo` -> ("tasks", "echo")."""
    prefix, _, topic = name.partition("/")
    match = _TOPIC.fullmatch(topic) if prefix == "topics" else None
    if match is None:
        raise InvalidArgumentError(
            f"{field} {name!r} is not a topic: expected 'topics/{{kind}}.{{id}}' with kind "
            "tasks, events, input or dead (e.g. 'topics/tasks.echo')"
        )
    return match.group(1), match.group(2)


class QueueAPIServicer(queue_pb2_grpc.QueueAPIServicer):
    """The QueueAPI servicer."""

    def __init__(self, state: MeshState, signer: AckIdSigner, registry: ServiceRegistry) -> None:
        self.state = state
        self._signer = signer
        self._registry = registry
        # Messages delivered by this replica and not yet answered, by reply subject.
        self._in_flight: dict[str, asyncio.Event] = {}
        self._attempts = TaskAttempts(state, signer, self._answer)

    def _stream_for(self, kind: str) -> str:
        t = self.state.topology
        return {"tasks": t.task_stream, "dead": t.dead_letter_stream}.get(kind, t.event_stream)

    async def Publish(
        self,
        request: q.PublishRequest,
        context: grpc.aio.ServicerContext[q.PublishRequest, q.PublishResponse],
    ) -> q.PublishResponse:
        kind, ident = parse_topic(request.topic)
        envelope = request.envelope
        if envelope.WhichOneof("payload") is None:
            raise InvalidArgumentError("envelope has no payload: set one of its oneof fields")
        if not envelope.id:
            envelope.id = new_id()
        if not envelope.HasField("publish_time"):
            envelope.publish_time.GetCurrentTime()
        if kind == "events":
            if envelope.HasField("task_event"):
                event = envelope.task_event
                name = TaskName.parse(event.task, "envelope.task_event.task")
                task = await self.state.tasks.get(task_key(name), event.task)
                caller().require_service(task.service, f"report on task {event.task!r}")
            # What happens to a task is decided by the control plane from the outcome a
            # service reports, never taken as published.
            raise InvalidArgumentError(
                "events topics take no envelopes: a service reports on its task with "
                "BeginTaskAttempt, ReportTaskEvent and CompleteTaskAttempt"
            )
        # Tasks are created by CreateTask, answers sent by SendTaskEvent: both check
        # what they carry. Publishing them raw is for operators only.
        caller().require_admin(f"publish on {request.topic}")
        check_bytes("envelope", envelope.ByteSize(), MAX_ENVELOPE_BYTES)
        with store_errors(f"publishing on {request.topic}"):
            ack = await self.state.js.publish(
                self.state.topology.topic_subject(f"{kind}.{ident}"),
                envelope.SerializeToString(),
                headers={"Nats-Msg-Id": envelope.id},
            )
        return q.PublishResponse(sequence=int(ack.seq), duplicate=bool(ack.duplicate))

    async def _consumer(
        self, request: q.SubscribeRequest, kind: str, ident: str
    ) -> tuple[str, float]:
        """The durable consumer that `request` binds to, and its ack wait."""
        topology = self.state.topology
        group = request.consumer_group
        asked = asked_ack_wait(request)
        if kind == "tasks":
            if group != ident:
                raise InvalidArgumentError(
                    f"a service's tasks are shared by one consumer group named after the "
                    f"service: use consumer_group {ident!r}"
                )
            check_service_id(ident, "topic")
            check_chars("replica_id", request.replica_id, MAX_ID_CHARS)
            # The one rule RegisterService follows: the ack wait asked for applies
            # when no other replica runs, else the running replicas' stays.
            info = await self._registry.place_consumer(ident, request.replica_id, asked)
            return info.name, info.config.ack_wait or DEFAULT_ACK_WAIT
        subject = (
            topology.task_events(ident)
            if kind == "events"
            else topology.topic_subject(f"{kind}.{ident}")
        )
        ack_wait = asked or DEFAULT_ACK_WAIT
        durable = await ensure_consumer(
            self.state.js,
            self._stream_for(kind),
            js_api.ConsumerConfig(
                durable_name=f"q_{group}_{hashlib.sha1(subject.encode()).hexdigest()[:12]}",
                filter_subject=subject,
                ack_policy=js_api.AckPolicy.EXPLICIT,
                ack_wait=ack_wait,
                inactive_threshold=3600.0,
            ),
        )
        return durable, ack_wait

    async def Subscribe(
        self,
        request: q.SubscribeRequest,
        context: grpc.aio.ServicerContext[q.SubscribeRequest, q.SubscribeResponse],
    ) -> AsyncIterator[q.SubscribeResponse]:
        kind, ident = parse_topic(request.topic)
        if not _GROUP.fullmatch(request.consumer_group):
            raise InvalidArgumentError(
                "consumer_group is required: 1-64 characters of A-Z, a-z, 0-9, '_' and '-'"
            )
        if request.max_in_flight < 0:
            raise InvalidArgumentError("max_in_flight must not be negative")
        subscriber = caller()
        if kind != "tasks":
            subscriber.require_admin(f"subscribe to {request.topic}")
        durable, ack_wait = await self._consumer(request, kind, ident)
        ack_wait_duration = proto_time.duration(ack_wait)
        delivered: asyncio.Queue[Msg] = asyncio.Queue()

        async def hold(msg: Msg) -> None:
            # The member's slot is taken until it acks or naks the message through
            # this replica, or until ack_wait passes (then JetStream redelivers it).
            answered = asyncio.Event()
            self._in_flight[msg.reply] = answered
            await delivered.put(msg)
            try:
                async with asyncio.timeout(ack_wait):
                    await answered.wait()
            except TimeoutError:
                pass
            finally:
                self._in_flight.pop(msg.reply, None)

        consumer = PullConsumer(
            self.state.nc,
            self._stream_for(kind),
            durable,
            hold,
            capacity=request.max_in_flight or 1,
        )
        await consumer.start()
        logger.info("queue: %s joined group %s", request.topic, request.consumer_group)
        try:
            while True:
                msg = await delivered.get()
                meta = msg.metadata
                published = timestamp_pb2.Timestamp()
                published.FromDatetime(meta.timestamp)
                yield q.SubscribeResponse(
                    message=q.QueueMessage(
                        ack_id=self._signer.issue(msg.reply, subscriber.subject, request.topic),
                        envelope=resources_pb2.Envelope.FromString(msg.data),
                        sequence=meta.sequence.stream,
                        delivery_count=meta.num_delivered,
                        publish_time=published,
                        trace_context=tracing.trace_headers(msg.headers),
                        ack_wait=ack_wait_duration,
                    )
                )
        finally:
            await consumer.stop()
            # Messages pulled for this member but never sent go back at once.
            while not delivered.empty():
                with contextlib.suppress(Exception):
                    await delivered.get_nowait().nak()
            await consumer.cancel_running()

    def _replies(self, topic: str, ack_ids: list[str]) -> list[str]:
        """The reply subjects behind `ack_ids`, each given to the caller by Subscribe
        on `topic` and of `topic`'s own consumer; PermissionDeniedError otherwise."""
        kind, ident = parse_topic(topic)
        if not ack_ids:
            raise InvalidArgumentError("ack_ids is required")
        subscriber = caller().subject
        stream = self._stream_for(kind)
        replies = []
        for ack_id in ack_ids:
            signed = self._signer.open(ack_id, subscriber)
            target = signed.reply
            consumer_ok = (
                target.consumer == self.state.topology.service_consumer(ident)
                if kind == "tasks"
                else target.consumer.startswith("q_")
            )
            if signed.topic != topic or target.stream != stream or not consumer_ok:
                raise PermissionDeniedError(
                    f"ack id {ack_id[:80]!r} is of a message delivered on {signed.topic!r}, "
                    f"not on {topic!r}"
                )
            replies.append(target.text)
        return replies

    async def _reply(
        self,
        topic: str,
        ack_ids: list[str],
        payload: bytes,
        *,
        confirm: bool,
        release: bool = True,
    ) -> None:
        for reply in self._replies(topic, ack_ids):
            await self._answer(reply, payload, confirm, release)

    async def _answer(
        self, reply: str, payload: bytes, confirm: bool, release: bool = True
    ) -> None:
        """Send one reply to a delivered message (checked by the caller)."""
        answered = self._in_flight.get(reply)
        if answered is not None and release:
            answered.set()
        if confirm:
            # Acks are confirmed by the server: one lost in a failover would redeliver.
            with contextlib.suppress(NatsTimeoutError):
                await self.state.nc.request(reply, payload, timeout=2.0)
        else:
            await self.state.nc.publish(reply, payload)

    async def AckMessages(
        self,
        request: q.AckMessagesRequest,
        context: grpc.aio.ServicerContext[q.AckMessagesRequest, q.AckMessagesResponse],
    ) -> q.AckMessagesResponse:
        await self._reply(request.topic, list(request.ack_ids), ACK, confirm=True)
        return q.AckMessagesResponse()

    async def NakMessages(
        self,
        request: q.NakMessagesRequest,
        context: grpc.aio.ServicerContext[q.NakMessagesRequest, q.NakMessagesResponse],
    ) -> q.NakMessagesResponse:
        parse_topic(request.topic)
        delay_ns = request.delay.seconds * 1_000_000_000 + request.delay.nanos
        if delay_ns < 0:
            raise InvalidArgumentError("delay must not be negative")
        await self._reply(request.topic, list(request.ack_ids), nak(delay_ns), confirm=False)
        return q.NakMessagesResponse()

    async def ExtendMessages(
        self,
        request: q.ExtendMessagesRequest,
        context: grpc.aio.ServicerContext[q.ExtendMessagesRequest, q.ExtendMessagesResponse],
    ) -> q.ExtendMessagesResponse:
        await self._reply(
            request.topic, list(request.ack_ids), IN_PROGRESS, confirm=False, release=False
        )
        return q.ExtendMessagesResponse()

    async def ListTopics(
        self,
        request: q.ListTopicsRequest,
        context: grpc.aio.ServicerContext[q.ListTopicsRequest, q.ListTopicsResponse],
    ) -> q.ListTopicsResponse:
        size = page_size(request.page_size)
        topology = self.state.topology
        prefix = f"{topology.prefix}."
        found: dict[str, q.Topic] = {}

        def topic_of(subject: str) -> q.Topic | None:
            parts = subject.removeprefix(prefix).split(".")
            if not subject.startswith(prefix) or len(parts) < 2:
                return None
            if {"*", ">"} & {parts[0], parts[1]}:
                return None  # a consumer of many topics (e.g. WaitTask's, of every end)
            name = f"{parts[0]}.{parts[1]}"  # events.{id}.e / .end are one topic
            topic = found.get(name)
            if topic is None:
                kind, ident = parts[0], parts[1]
                filter_subject = (
                    topology.task_events(ident)
                    if kind == "events"
                    else topology.topic_subject(name)
                )
                topic = found[name] = q.Topic(name=f"topics/{name}", subject=filter_subject)
            return topic

        for stream in (topology.task_stream, topology.event_stream, topology.dead_letter_stream):
            try:
                info = await self.state.js.stream_info(stream, subjects_filter=">")
                consumers = await self.state.js.consumers_info(stream)
            except JsNotFoundError:
                continue
            for subject, count in (info.state.subjects or {}).items():
                if (topic := topic_of(subject)) is not None:
                    topic.message_count += count
            for consumer in consumers:
                topic = topic_of(consumer.config.filter_subject or "")
                if topic is not None and consumer.name:
                    topic.consumer_groups.append(consumer.name)
        topics = [(name, topic) for name, topic in found.items()]
        page = paginate(topics, size, request.page_token, listing="topics")
        return q.ListTopicsResponse(topics=page.items, next_page_token=page.next_page_token)

    async def BeginTaskAttempt(
        self,
        request: q.BeginTaskAttemptRequest,
        context: grpc.aio.ServicerContext[q.BeginTaskAttemptRequest, q.BeginTaskAttemptResponse],
    ) -> q.BeginTaskAttemptResponse:
        return await self._attempts.begin(request)

    async def ReportTaskEvent(
        self,
        request: q.ReportTaskEventRequest,
        context: grpc.aio.ServicerContext[q.ReportTaskEventRequest, q.ReportTaskEventResponse],
    ) -> q.ReportTaskEventResponse:
        return await self._attempts.report(request)

    async def CompleteTaskAttempt(
        self,
        request: q.CompleteTaskAttemptRequest,
        context: grpc.aio.ServicerContext[
            q.CompleteTaskAttemptRequest, q.CompleteTaskAttemptResponse
        ],
    ) -> q.CompleteTaskAttemptResponse:
        return await self._attempts.complete(request)
