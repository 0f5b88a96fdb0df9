"""The NATS resources of one mesh: subjects, streams, consumers and KV buckets.

Everything is named from one prefix (default ``mesh``), so several meshes can share a
NATS cluster. ``ensure`` creates what is missing and is safe to call from every
process at start-up.

    subject                      stream        what
    {p}.tasks.{service}          {P}_TASKS     task assignments (work queue, one durable
                                               consumer per service: svc_{service})
    {p}.events.{task_id}.e       {P}_EVENTS    task events, kept for replay
    {p}.events.{task_id}.end     {P}_EVENTS    a task's last event (its final state), apart
                                               so control planes can wait on `events.*.end`
    {p}.input.{task_id}          {P}_EVENTS    events sent into waiting tasks
    {p}.live.{task_id}.e|end     (core NATS)   each task event again once stored, with its
                                               stream sequence (the stream republishes
                                               them): what event streams and turns follow
                                               (live_events.py)
    {p}.dead.{service}           {P}_DEAD      tasks that failed for good
    {p}.created.{session}        {P}_CREATED   one message per task created: the creation
                                               order (task_index.py)
    {p}.sessions.{ns}.{agent}    {P}_SESSIONS  one message per session created or renewed,
                                               by namespace and agent (`_`: none): what
                                               ListSessions and ListAgentSessions read
                                               (session_index.py)
    {p}.cancel.{task_id}         (core NATS)   cancel signal to the replica running it
    {p}.journal.{service}        (core NATS)   a replica's requests to record its tasks'
                                               events (journal.proto), answered by a
                                               control plane (request/reply)
    _INBOX.{p}.svc.{service}.>   (core NATS)   replies to a replica's requests, and its
                                               deliveries (pull requests, watches)
    _INBOX.{p}.cp.>              (core NATS)   the same for the control planes

    bucket                       key
    {p}_services                 {service}
    {p}_sessions                 {session}
    {p}_tasks                    {session}.{task}
    {p}_session_state            {session}.{service}   whose turn it is, the saved workflow
                                                       Context and the last run's outcome
                                                       (the worker's session_turn.py)
    {p}_waiting                  {session}.{task}      the tasks waiting for input (the inbox)
    {p}_api_keys                 {key id}              issued API keys (secrets hashed)
    {p}_agents                   {agent id}            agents created by the Agents API
    {p}_responses                {response id}         stored responses (Responses API)
    {p}_usage                    {session}             tokens the session's tasks used
                                                       (TokenUsage; written as the journal
                                                       charges them, session_usage.py)
    {p}_secrets                  {name}                keys only control planes read
                                                       (e.g. the one that signs ack ids)

Finished tasks, idle sessions and their events expire: their messages carry a TTL
(JetStream's per-message TTL) and nothing else keeps them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, BadRequestError

from llama_mesh.config import NatsConfig, default
from llama_mesh.config.nats import PREFIX
from llama_mesh.jetstream.api_errors import (
    CLUSTER_FORMING,
    CONSUMER_EXISTS,
    JS_STREAM_INVALID_CONFIG,
    JS_STREAM_NAME_EXIST,
)
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)

DAY = 24 * 3600.0
DUPLICATE_WINDOW = 120.0
"""Seconds in which JetStream drops a second message with the same Nats-Msg-Id."""
MAX_TTL = 366 * DAY
EXPIRY_MARKER_TTL = 60.0
"""Seconds the marker of an expired KV record stays (watchers see it as a deletion)."""
"""The age at which a stream drops events whatever TTL they carry (a backstop)."""
T = TypeVar("T")


@dataclass(frozen=True)
class Topology:
    """Names of a mesh's NATS resources, derived from its prefix."""

    prefix: str = default(NatsConfig, "prefix")
    replicas: int = default(NatsConfig, "replicas")
    event_retention: float = DAY
    dead_letter_retention: float = 7 * DAY

    def __post_init__(self) -> None:
        if not PREFIX.fullmatch(self.prefix):
            raise ValueError(f"mesh prefix {self.prefix!r} must match {PREFIX.pattern}")

    @classmethod
    def of(cls, nats: NatsConfig) -> Topology:
        """The topology of a mesh with these NATS settings (its prefix and replicas)."""
        return cls(prefix=nats.prefix, replicas=nats.replicas)

    @property
    def task_stream(self) -> str:
        return f"{self.prefix.upper()}_TASKS"

    @property
    def event_stream(self) -> str:
        return f"{self.prefix.upper()}_EVENTS"

    @property
    def dead_letter_stream(self) -> str:
        return f"{self.prefix.upper()}_DEAD"

    @property
    def created_stream(self) -> str:
        return f"{self.prefix.upper()}_CREATED"

    def created_subject(self, session_id: str) -> str:
        return f"{self.prefix}.created.{session_id}"

    @property
    def created_all(self) -> str:
        return f"{self.prefix}.created.>"

    @property
    def session_stream(self) -> str:
        return f"{self.prefix.upper()}_SESSIONS"

    def session_subject(self, namespace: str, agent: str = "") -> str:
        """The session index's subject of the sessions of a namespace and an agent (""
        for none)."""
        return f"{self.prefix}.sessions.{namespace or '_'}.{agent or '_'}"

    def sessions_of(self, namespace: str | None, agent: str | None) -> str:
        """The session index's subjects of one namespace and one agent (None: any)."""
        ns = "*" if namespace is None else namespace or "_"
        return f"{self.prefix}.sessions.{ns}.{'*' if agent is None else agent or '_'}"

    def task_subject(self, service_id: str) -> str:
        return f"{self.prefix}.tasks.{service_id}"

    def event_subject(self, task_id: str) -> str:
        return f"{self.prefix}.events.{task_id}.e"

    def final_event_subject(self, task_id: str) -> str:
        return f"{self.prefix}.events.{task_id}.end"

    def task_events(self, task_id: str) -> str:
        """Every event of one task, in order (a filter)."""
        return f"{self.prefix}.events.{task_id}.*"

    def live_task_events(self, task_id: str) -> str:
        """Every event of one task, republished by the stream as it stores them."""
        return f"{self.prefix}.live.{task_id}.*"

    @property
    def event_republish(self) -> api.RePublish:
        """The event stream's republish of every event it stores, to the live subjects."""
        return api.RePublish(src=f"{self.prefix}.events.>", dest=f"{self.prefix}.live.>")

    @property
    def final_events(self) -> str:
        """The last event of every task (a filter)."""
        return f"{self.prefix}.events.*.end"

    def input_subject(self, task_id: str) -> str:
        return f"{self.prefix}.input.{task_id}"

    def dead_letter_subject(self, service_id: str) -> str:
        return f"{self.prefix}.dead.{service_id}"

    def journal_subject(self, service_id: str) -> str:
        """Where replicas of `service_id` ask a control plane to record (`*`: all)."""
        return f"{self.prefix}.journal.{service_id}"

    def cancel_subject(self, task_id: str) -> str:
        return f"{self.prefix}.cancel.{task_id}"

    def service_consumer(self, service_id: str) -> str:
        return f"svc_{service_id}"

    def inbox_prefix(self, service_id: str | None = None) -> str:
        """Where the replies to a component's requests come: a replica of `service_id`'s
        own (its NATS user may listen there and on nothing of anyone else's), or a
        control plane's (None)."""
        if service_id is None:
            return f"_INBOX.{self.prefix}.cp"
        return f"_INBOX.{self.prefix}.svc.{service_id}"

    def bucket(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def topic_subject(self, topic: str) -> str:
        """`tasks.echo` -> `mesh.tasks.echo`."""
        return f"{self.prefix}.{topic}"

    def queue_config(self, nats_urls: list[str]) -> resources_pb2.QueueConfig:
        return resources_pb2.QueueConfig(
            nats_urls=nats_urls,
            prefix=self.prefix,
            task_stream=self.task_stream,
            event_stream=self.event_stream,
            dead_letter_stream=self.dead_letter_stream,
            service_bucket=self.bucket("services"),
            session_bucket=self.bucket("sessions"),
            task_bucket=self.bucket("tasks"),
            context_bucket=self.bucket("session_state"),
        )

    async def ensure(self, js: JetStreamContext) -> None:
        """Create the streams and buckets that do not exist yet."""
        streams = [
            api.StreamConfig(
                name=self.task_stream,
                subjects=[f"{self.prefix}.tasks.>"],
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=DUPLICATE_WINDOW,
            ),
            api.StreamConfig(
                name=self.event_stream,
                subjects=[f"{self.prefix}.events.>", f"{self.prefix}.input.>"],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                num_replicas=self.replicas,
                # Events expire with their task (each carries its TTL); this is a backstop.
                max_age=MAX_TTL,
                allow_msg_ttl=True,
                duplicate_window=DUPLICATE_WINDOW,
                # Each event again on a plain subject once stored, with its sequence:
                # a turn stream follows it without a consumer (live_events.py).
                republish=self.event_republish,
            ),
            api.StreamConfig(
                name=self.created_stream,
                subjects=[self.created_all],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                num_replicas=self.replicas,
                max_age=MAX_TTL,
                allow_msg_ttl=True,
                allow_direct=True,
                duplicate_window=DUPLICATE_WINDOW,
            ),
            api.StreamConfig(
                name=self.session_stream,
                subjects=[f"{self.prefix}.sessions.>"],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                num_replicas=self.replicas,
                max_age=MAX_TTL,
                allow_msg_ttl=True,
                allow_direct=True,
                duplicate_window=DUPLICATE_WINDOW,
            ),
            api.StreamConfig(
                name=self.dead_letter_stream,
                subjects=[f"{self.prefix}.dead.>"],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                num_replicas=self.replicas,
                max_age=self.dead_letter_retention,
            ),
        ]
        for config in streams:
            try:
                await while_forming(functools.partial(js.add_stream, config))
            except BadRequestError as err:
                # A stream with this name exists with another config (an older
                # version's): bring it up to date where JetStream allows it, else keep it.
                if err.err_code != JS_STREAM_NAME_EXIST:
                    raise
                try:
                    await js.update_stream(config)
                    logger.info("stream %s updated to this version's config", config.name)
                except APIError as refused:
                    # What an update may not change (the storage, a work queue's
                    # retention) JetStream refuses as an invalid config, a 500.
                    if not isinstance(refused, BadRequestError) and (
                        refused.err_code != JS_STREAM_INVALID_CONFIG
                    ):
                        raise
                    logger.warning(
                        "stream %s exists with another config; keeping it (%s)",
                        config.name,
                        refused.description,
                    )
        # Buckets whose records expire (per-message TTLs) leave a marker for a while
        # when one does, so that a watch sees the expiry as a deletion.
        for name, expiring in (
            ("services", False),
            ("sessions", True),
            ("tasks", True),
            ("session_state", True),
            ("waiting", False),
            ("api_keys", False),
            ("agents", False),
            ("responses", False),
            ("usage", True),
            ("secrets", False),
        ):
            try:
                await while_forming(
                    functools.partial(
                        js.create_key_value,
                        bucket=self.bucket(name),
                        history=1,
                        storage=api.StorageType.FILE,
                        replicas=self.replicas,
                        limit_marker_ttl=EXPIRY_MARKER_TTL if expiring else None,
                    )
                )
            except BadRequestError as err:
                # As for streams: whoever created the bucket chose its config (e.g. a
                # service replica does not know the cluster's replica count).
                if err.err_code != JS_STREAM_NAME_EXIST:
                    raise


async def while_forming(create: Callable[[], Awaitable[T]], *, budget: float = 30.0) -> T:
    """Run `create`, retrying with backoff while the cluster is still forming."""
    delay = 0.05
    loop = asyncio.get_running_loop()
    give_up = loop.time() + budget
    while True:
        try:
            return await create()
        except (APIError, NatsTimeoutError, NoRespondersError) as err:
            forming = not isinstance(err, APIError) or err.err_code in CLUSTER_FORMING
            if not forming or loop.time() + delay > give_up:
                raise
            logger.info("JetStream not ready (%s); retrying in %.2fs", err, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


async def ensure_consumer(js: JetStreamContext, stream: str, config: api.ConsumerConfig) -> str:
    """Create a durable consumer, or update it to `config`; its name.

    JetStream's create of a durable that exists updates what it can (e.g. the ack
    wait), so the last caller's config applies.
    """
    assert config.durable_name is not None
    try:
        await while_forming(functools.partial(js.add_consumer, stream, config))
    except BadRequestError as err:
        if err.err_code not in CONSUMER_EXISTS:
            raise
    return config.durable_name
