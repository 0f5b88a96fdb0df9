"""Resource names (`services/{service}`, `sessions/{session}/tasks/{task}`) and ids.

Parsing raises InvalidArgumentError with a message that says what a valid name looks
like, so a malformed name never reaches the store.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from llama_mesh.core.errors import InvalidArgumentError

SERVICE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
ALL_SESSIONS = "-"
# The built-in agent service: it runs the agents the Agents API creates (and responses
# of the Responses API) from their configuration.
AGENTS_SERVICE = "agents"
# The service id a deployment's orchestrator runs as (the service a task naming none
# goes to, when it is the only orchestrator).
ORCHESTRATOR_SERVICE = "orchestrator"


def new_id() -> str:
    """A fresh random id (32 hex characters): 128 random bits, as uuid4().hex had 122,
    without building a UUID (~8x the cost, on every event of a run)."""
    return secrets.token_hex(16)


def check_service_id(service_id: str, field: str = "service") -> str:
    if not SERVICE_ID.fullmatch(service_id):
        raise InvalidArgumentError(
            f"{field} {service_id!r} is not a valid service id: use 1-63 characters "
            "of a-z, 0-9, '_' and '-', starting with a letter or digit"
        )
    return service_id


def check_session_id(session_id: str, field: str = "session_id") -> str:
    if not SESSION_ID.fullmatch(session_id):
        raise InvalidArgumentError(
            f"{field} {session_id!r} is not a valid session id: use 1-128 characters "
            "of A-Z, a-z, 0-9, '_' and '-', starting with a letter or digit"
        )
    return session_id


def service_name(service_id: str) -> str:
    return f"services/{service_id}"


def parse_service_name(name: str, field: str = "name") -> str:
    """`services/{service}` -> service id."""
    prefix, _, service_id = name.partition("/")
    if prefix != "services" or not service_id:
        raise InvalidArgumentError(
            f"{field} {name!r} is not a service name: expected 'services/{{service}}'"
        )
    return check_service_id(service_id, field)


def session_name(session_id: str) -> str:
    return f"sessions/{session_id}"


def parse_session_name(name: str, field: str = "name", *, allow_all: bool = False) -> str:
    """`sessions/{session}` -> session id (`-` for all sessions when allowed)."""
    prefix, _, session_id = name.partition("/")
    if prefix != "sessions" or not session_id:
        raise InvalidArgumentError(
            f"{field} {name!r} is not a session name: expected 'sessions/{{session}}'"
        )
    if allow_all and session_id == ALL_SESSIONS:
        return session_id
    return check_session_id(session_id, field)


@dataclass(frozen=True)
class TaskName:
    """A parsed `sessions/{session}/tasks/{task}`."""

    session_id: str
    task_id: str

    def __str__(self) -> str:
        return f"sessions/{self.session_id}/tasks/{self.task_id}"

    @property
    def session(self) -> str:
        return session_name(self.session_id)

    @classmethod
    def parse(cls, name: str, field: str = "name") -> TaskName:
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "sessions" or parts[2] != "tasks":
            raise InvalidArgumentError(
                f"{field} {name!r} is not a task name: "
                "expected 'sessions/{session}/tasks/{task}'"
            )
        check_session_id(parts[1], field)
        if not TASK_ID.fullmatch(parts[3]):
            raise InvalidArgumentError(f"{field} {name!r} has an invalid task id")
        return cls(parts[1], parts[3])
