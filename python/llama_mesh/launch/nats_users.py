"""NATS users of an embedded deployment: only the mesh's own components connect.

`up` makes one nkey per component (the control plane, each service) and a
nats-server config that admits those keys and no one else: an anonymous client is
refused at connect. The control plane may do everything in the account (it creates
the streams and buckets, records every task's events and serves the Queue API); a
service replica may publish only what `service_permissions` lists: reads, its own
tasks' consumer, its own service's session state, and requests to a control plane to
record the rest (jetstream/remote_journal.py); and it may listen only on its own inbox
prefix and the few signals its runs wait on.

    users = NatsUsers.ensure(state_dir / "auth" / "nats", "mesh", ["echo"])
    users.config_file              # nats-server -c
    users.seed_file("control-plane")
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nkeys

from llama_mesh.jetstream.topology import Topology
from llama_mesh.launch.certificates import write_private

CONTROL_PLANE = "control-plane"


def service_user(service_id: str) -> str:
    return f"service-{service_id}"


def _new_seed() -> bytes:
    seed: bytes = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed


def _public_key(seed: bytes) -> str:
    key = nkeys.from_seed(bytearray(seed))
    try:
        public: str = key.public_key.decode()
        return public
    finally:
        key.wipe()


# The buckets a replica reads: all but the control planes' secrets.
READABLE_BUCKETS = (
    "services",
    "sessions",
    "tasks",
    "session_state",
    "waiting",
    "api_keys",
    "agents",
    "responses",
    "usage",
)


def service_permissions(prefix: str, service_id: str) -> dict[str, object]:
    """All a replica of `service_id` may do on NATS, and nothing else.

    It reads the mesh's state (not the control planes' secrets), takes its tasks from
    its service's durable consumer (which a control plane made) and acks them,
    writes its own service's session state (keys ``{session}.{service}``) and dead
    letters, and asks a control plane to record its tasks' events and token usage
    (``journal.{service}``). It publishes no task, event or answer, writes no task
    record, session, count or index, changes no stream, and creates or changes no
    consumer of the task stream. It listens only on its own inbox prefix and the few
    subjects its runs wait on: not on task subjects (another service's work), journal
    subjects (the control planes' queue group) or the replies to anyone else's
    requests.
    """
    topology = Topology(prefix)
    api = "$JS.API"
    big = prefix.upper()
    tasks = f"{big}_TASKS"
    consumer = f"svc_{service_id}"
    streams = [
        *(f"KV_{prefix}_{bucket}" for bucket in READABLE_BUCKETS),
        f"{big}_EVENTS",
        f"{big}_CREATED",
    ]
    publish = [
        # reading: stream info, messages by key or sequence, ordered consumers (watches)
        *(f"{api}.STREAM.INFO.{stream}" for stream in streams),
        *(f"{api}.STREAM.MSG.GET.{stream}" for stream in streams),
        *(f"{api}.DIRECT.GET.{stream}" for stream in streams),
        *(f"{api}.DIRECT.GET.{stream}.>" for stream in streams),
        *(f"{api}.CONSUMER.CREATE.{stream}" for stream in streams),
        *(f"{api}.CONSUMER.CREATE.{stream}.>" for stream in streams),
        *(f"{api}.CONSUMER.INFO.{stream}.*" for stream in streams),
        "$JS.FC.>",
        # its own tasks: its service's durable consumer, pulled and acked. A control
        # plane makes it (service_consumer.py): a replica that could create or update
        # it could filter it on another service's tasks, and JetStream cannot restrict
        # a consumer's config in a permission.
        f"{api}.CONSUMER.INFO.{tasks}.{consumer}",
        f"{api}.CONSUMER.MSG.NEXT.{tasks}.{consumer}",
        f"$JS.ACK.{tasks}.{consumer}.>",
        # its own service's session state, and its own dead letters
        f"$KV.{prefix}_session_state.*.{service_id}",
        f"{prefix}.dead.{service_id}",
        # everything else it records goes through a control plane
        f"{prefix}.journal.{service_id}",
    ]
    subscribe = [
        # replies to its requests, its deliveries and watches: its own inbox prefix
        # (jetstream/connection.py), never another component's
        f"{topology.inbox_prefix(service_id)}.>",
        # a new leader of its consumer (jetstream/pull_consumer.py asks again)
        f"$JS.EVENT.ADVISORY.CONSUMER.LEADER_ELECTED.{tasks}.{consumer}",
        # signals about tasks it may run: cancels, answers to the questions of waiting
        # tasks, and a session's earlier task ending (all also in the event stream,
        # which it reads)
        topology.cancel_subject("*"),
        topology.input_subject("*"),
        topology.final_event_subject("*"),
    ]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}


@dataclass(frozen=True)
class NatsUsers:
    """The nkeys and the nats-server config of an embedded deployment."""

    directory: Path

    @property
    def config_file(self) -> Path:
        return self.directory / "nats-server.conf"

    def seed_file(self, user: str) -> Path:
        return self.directory / f"{user}.nk"

    @classmethod
    def ensure(cls, directory: Path, prefix: str, services: Iterable[str]) -> NatsUsers:
        found = cls(directory)
        users: list[dict[str, object]] = []
        for user in [CONTROL_PLANE, *(service_user(s) for s in services)]:
            path = found.seed_file(user)
            try:
                seed = path.read_bytes().strip()
                public = _public_key(seed)
            except (OSError, nkeys.NkeysError, ValueError):
                seed = _new_seed()
                write_private(path, seed + b"\n")
                public = _public_key(seed)
            entry: dict[str, object] = {"nkey": public}
            if user != CONTROL_PLANE:
                entry["permissions"] = service_permissions(prefix, user.removeprefix("service-"))
            users.append(entry)
        # nats-server reads JSON as its config syntax (a superset).
        config = {"authorization": {"users": users}}
        write_private(found.config_file, (json.dumps(config, indent=2) + "\n").encode())
        return found
