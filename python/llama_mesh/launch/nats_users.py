"""NATS users of an embedded deployment: only the mesh's own components connect.

`up` makes one nkey per component (the control plane, each service) and a
nats-server config that admits those keys and no one else: an anonymous client is
refused at connect. The control plane may do everything in the account (it creates
the streams and buckets and serves the Queue API); a service replica may not create,
change, purge or delete streams and consumers other than its own, publish tasks or
answers, or write the registry, sessions or API keys.

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


def service_permissions(prefix: str, service_id: str) -> dict[str, object]:
    """What a replica of `service_id` may not do (everything else it needs, it may)."""
    big = prefix.upper()
    return {
        "publish": {
            "allow": [">"],
            "deny": [
                # the mesh's streams and buckets: no creating, changing or deleting
                "$JS.API.STREAM.CREATE.>",
                "$JS.API.STREAM.UPDATE.>",
                "$JS.API.STREAM.DELETE.>",
                "$JS.API.STREAM.PURGE.>",
                "$JS.API.STREAM.MSG.DELETE.>",
                # durable consumers of other services' tasks
                f"$JS.API.CONSUMER.DELETE.{big}_TASKS.>",
                # tasks are created, and answers sent, by the control plane only
                f"{prefix}.tasks.>",
                f"{prefix}.input.>",
                # the creation index is written as tasks are created (the turns' order)
                f"{prefix}.created.>",
                # the session index, written as sessions are created and renewed
                f"{prefix}.sessions.>",
                # the registry, sessions, keys, agents and responses are the control plane's
                f"$KV.{prefix}_services.>",
                f"$KV.{prefix}_sessions.>",
                f"$KV.{prefix}_api_keys.>",
                f"$KV.{prefix}_agents.>",
                f"$KV.{prefix}_responses.>",
            ],
        },
        # A task that waits for a person listens for the answer on its input subject
        # (worker/task_inputs.py); answers are in the event stream, which replicas read,
        # so only the task subjects (a work queue no replica can read but its own
        # service's) are closed to them.
        "subscribe": {"allow": [">"], "deny": [f"{prefix}.tasks.>"]},
    }


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
