"""A process's connection to the mesh's state: NATS, JetStream, the KV buckets.

async with MeshState.connect(["nats://127.0.0.1:4222"]) as state:
    task = await state.tasks.get(key, name)
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import SlowConsumerError
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from llama_mesh.core.errors import UnavailableError
from llama_mesh.jetstream.buckets import ProtoBucket
from llama_mesh.jetstream.closing import close_connection
from llama_mesh.jetstream.journal import TaskJournal
from llama_mesh.jetstream.remote_journal import Journal, RemoteJournal
from llama_mesh.jetstream.session_usage import SessionUsage
from llama_mesh.jetstream.topology import Topology
from llama_mesh.v1 import agents_pb2, resources_pb2, responses_pb2

logger = logging.getLogger(__name__)


class _TlsUpgradeEof(logging.Filter):
    """nats-py turns its connection into TLS in place (loop.start_tls), so asyncio's
    stream protocol never learns it runs over TLS and, when the server closes it,
    warns that its eof_received's answer has no effect: true, and harmless; it would
    otherwise print a warning per component each time a mesh with NATS TLS stops."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "from eof_received() has no effect when using ssl" not in record.getMessage()


_TLS_UPGRADE_EOF = _TlsUpgradeEof()


@dataclass
class MeshState:
    nc: NatsClient
    js: JetStreamContext
    topology: Topology
    nats_urls: list[str]
    services: ProtoBucket[resources_pb2.Service]
    sessions: ProtoBucket[resources_pb2.Session]
    tasks: ProtoBucket[resources_pb2.Task]
    # What records task events: the journal itself in a control plane, a request to
    # one in a service replica (`connect(..., replica_of=...)`).
    journal: Journal
    # {session}.{service}: whose turn it is, the Context, the last outcome (worker).
    session_state: KeyValue
    # {session}.{task} of the tasks waiting for input: the inbox.
    waiting: KeyValue
    agents: ProtoBucket[agents_pb2.Agent]
    responses: ProtoBucket[responses_pb2.StoredResponse]
    # Tokens per session (Session.usage), apart from the sessions the control plane owns.
    usage: ProtoBucket[resources_pb2.TokenUsage]
    # Called after NATS reconnects (e.g. to renew pull requests a restarted server lost).
    reconnect_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Called when nats.py dropped a message a subscription had no room for (its pending
    # limits: a slow consumer), with nothing else to show for it (no reconnect).
    drop_hooks: list[Callable[[SlowConsumerError], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        nats_urls: list[str],
        topology: Topology | None = None,
        *,
        name: str = "llama-mesh",
        user_credentials: str | None = None,
        nkeys_seed: str | None = None,
        tls: ssl.SSLContext | None = None,
        ensure: bool = True,
        replica_of: str | None = None,
    ) -> AsyncIterator[MeshState]:
        """Connect; a replica of a service (`replica_of`) records its tasks' events
        through a control plane, which checks that they are its own."""
        topology = topology or Topology()

        drop_hooks: list[Callable[[SlowConsumerError], Awaitable[None]]] = []

        async def on_error(err: Exception) -> None:
            logger.warning("nats: %s", err)
            if isinstance(err, SlowConsumerError):
                for drop_hook in drop_hooks:
                    await drop_hook(err)

        closing = False

        async def on_disconnect() -> None:
            if not closing:  # closing on purpose is not news
                logger.warning("nats: disconnected from %s", nats_urls)

        hooks: list[Callable[[], Awaitable[None]]] = []

        async def on_reconnect() -> None:
            logger.info("nats: reconnected to %s", nc.connected_url)
            for hook in hooks:
                await hook()

        if tls is not None:
            logging.getLogger("asyncio").addFilter(_TLS_UPGRADE_EOF)  # once: same instance
        try:
            nc = await nats.connect(
                servers=nats_urls,
                name=name,
                user_credentials=user_credentials,
                nkeys_seed=nkeys_seed,
                tls=tls,
                # Its own, so that a replica's NATS user may listen for its replies
                # and for no one else's (launch/nats_users.py).
                inbox_prefix=topology.inbox_prefix(replica_of),
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                max_reconnect_attempts=-1,
                connect_timeout=5,
                allow_reconnect=True,
            )
        except Exception as err:  # nats raises several unrelated types here
            raise UnavailableError(f"cannot connect to NATS at {nats_urls}: {err}") from err
        try:
            js = nc.jetstream(timeout=10)
            if ensure:
                await topology.ensure(js)
            tasks = await ProtoBucket.open(js, topology.bucket("tasks"), resources_pb2.Task, "task")
            waiting = await js.key_value(topology.bucket("waiting"))
            sessions = await ProtoBucket.open(
                js, topology.bucket("sessions"), resources_pb2.Session, "session"
            )
            usage = await ProtoBucket.open(
                js, topology.bucket("usage"), resources_pb2.TokenUsage, "token usage"
            )
            journal: Journal = (
                TaskJournal(js, topology, tasks, waiting, SessionUsage(usage, sessions))
                if replica_of is None
                else RemoteJournal(nc, topology, replica_of)
            )
            state = cls(
                nc=nc,
                js=js,
                topology=topology,
                nats_urls=list(nats_urls),
                services=await ProtoBucket.open(
                    js,
                    topology.bucket("services"),
                    resources_pb2.Service,
                    "service",
                ),
                sessions=sessions,
                tasks=tasks,
                journal=journal,
                session_state=await js.key_value(topology.bucket("session_state")),
                waiting=waiting,
                agents=await ProtoBucket.open(
                    js, topology.bucket("agents"), agents_pb2.Agent, "agent"
                ),
                responses=await ProtoBucket.open(
                    js, topology.bucket("responses"), responses_pb2.StoredResponse, "response"
                ),
                usage=usage,
                reconnect_hooks=hooks,
                drop_hooks=drop_hooks,
            )
            yield state
        finally:
            closing = True
            await close_connection(nc)
