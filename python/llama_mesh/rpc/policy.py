"""The one table of who may call what: every RPC of every llama-mesh API.

`admin` may call everything. Each rule names the other roles that may call the RPC;
for a `service:{id}` caller, `owner` names the request field that says which service
the call acts for, and the call is allowed only for the caller's own service.
What needs stored state to decide (that a task belongs to the calling service) is
checked by the servicer, and the rule's `note` says so. A method that is not in the
table is denied (and tests/test_auth_policy.py fails for it).

docs/security.md's table of roles is generated from this module
(`python -m llama_mesh.rpc.policy`); a test fails when the two differ.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llama_mesh.core.access import CLIENT, SERVICE
from llama_mesh.core.errors import PermissionDeniedError
from llama_mesh.core.names import SERVICE_ID
from llama_mesh.rpc.identity import Identity

# Calls every server answers without credentials when the deployment keeps them open
# (the default): load balancers probe health, grpcurl lists services by reflection.
HEALTH_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
REFLECTION_METHODS = frozenset(
    {
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)


@dataclass(frozen=True)
class Owner:
    """How to read, from a request, the service a `service:{id}` caller acts for."""

    field: str
    extract: Callable[[Any], str | None]


def _service_in(field: str) -> Owner:
    """A `services/{id}` name in a (dotted) request field."""

    def extract(request: Any) -> str | None:
        value: Any = request
        for part in field.split("."):
            value = getattr(value, part)
        prefix, _, service_id = str(value).partition("/")
        return service_id if prefix == "services" and SERVICE_ID.fullmatch(service_id) else None

    return Owner(field, extract)


def _task_topic(request: Any) -> str | None:
    """`topics/tasks.{id}` -> id; other topics name no service."""
    kind, _, ident = str(request.topic).removeprefix("topics/").partition(".")
    return ident if kind == "tasks" and SERVICE_ID.fullmatch(ident) else None


@dataclass(frozen=True)
class Rule:
    """Who besides `admin` may call one RPC."""

    roles: frozenset[str] = frozenset()
    owner: Owner | None = None
    note: str = ""

    def admits(self, identity: Identity) -> bool:
        """Whether the caller's roles could allow the call (before reading the request)."""
        return identity.is_admin or bool(identity.kinds() & self.roles)

    def check(self, identity: Identity, method: str, request: Any) -> None:
        """PermissionDeniedError unless the caller may make this call."""
        if identity.is_admin or (CLIENT in self.roles and CLIENT in identity.roles):
            return
        if SERVICE in self.roles and identity.services:
            if self.owner is None:
                return
            service_id = self.owner.extract(request)
            if service_id is not None and service_id in identity.services:
                return
            raise PermissionDeniedError(
                f"{identity.subject} may call {method} only for its own service "
                f"({', '.join(sorted(identity.services))}), not for {self.owner.field} "
                f"naming {service_id or 'another'!r}"
            )
        raise PermissionDeniedError(
            f"{identity.subject} may not call {method}: it needs one of the roles "
            f"{self.describe_roles()} (it has {sorted(identity.roles)})"
        )

    def describe_roles(self) -> list[str]:
        return ["admin", *(f"{r}:{{own}}" if r == SERVICE else r for r in sorted(self.roles))]


ADMIN_ONLY = Rule()
AUTHENTICATED = frozenset({CLIENT, SERVICE})
_CLIENT = Rule(frozenset({CLIENT}))
_READ_REGISTRY = Rule(AUTHENTICATED)
_REPORT_ATTEMPT = Rule(
    frozenset({SERVICE}),
    note="only a task of the caller's service, with the ack id of its delivery "
    "on tasks.{that service}",
)

_CP = "/llama_mesh.v1.ControlPlaneAPI/"
_QUEUE = "/llama_mesh.v1.QueueAPI/"
_SERVICE = "/llama_mesh.v1.ServiceAPI/"
_AUTH = "/llama_mesh.v1.AuthAPI/"
_AGENTS = "/llama_mesh.v1.AgentsAPI/"
_RESPONSES = "/llama_mesh.v1.ResponsesAPI/"

POLICY: Mapping[str, Rule] = {
    # ControlPlaneAPI: the registry ...
    _CP + "RegisterService": Rule(
        frozenset({SERVICE}),
        _service_in("service.name"),
        note="changing the description, schema or settings of a running service needs admin",
    ),
    _CP + "RenewServiceLease": Rule(frozenset({SERVICE}), _service_in("name")),
    _CP + "DeregisterService": Rule(
        frozenset({SERVICE}),
        _service_in("name"),
        note="removing the whole service (no replica_id) needs admin",
    ),
    _CP + "GetService": _READ_REGISTRY,
    _CP + "ListServices": _READ_REGISTRY,
    # ... sessions and tasks ...
    _CP + "CreateSession": _CLIENT,
    _CP + "GetSession": _CLIENT,
    _CP + "ListSessions": _CLIENT,
    _CP + "DeleteSession": _CLIENT,
    _CP + "CreateTask": _CLIENT,
    _CP + "RunTask": _CLIENT,
    _CP + "WaitTask": _CLIENT,
    _CP + "GetTask": _CLIENT,
    _CP + "ListTasks": _CLIENT,
    _CP + "CancelTask": _CLIENT,
    _CP + "StreamTaskEvents": _CLIENT,
    _CP + "SendTaskEvent": _CLIENT,
    # ... and where NATS is: only for the mesh's own services.
    _CP + "GetQueueConfig": Rule(frozenset({SERVICE})),
    # QueueAPI: services in other languages take and report their own tasks.
    _QUEUE + "Publish": Rule(
        frozenset({SERVICE}),
        note="events topics take nothing (services report with the attempt RPCs); "
        "tasks, input and dead topics: admin",
    ),
    _QUEUE + "Subscribe": Rule(
        frozenset({SERVICE}),
        Owner("topic", _task_topic),
        note="only tasks.{own service}; other topics: admin",
    ),
    _QUEUE + "AckMessages": Rule(
        frozenset({SERVICE}),
        Owner("topic", _task_topic),
        note="ack ids must be of the topic's own consumer",
    ),
    _QUEUE + "NakMessages": Rule(
        frozenset({SERVICE}),
        Owner("topic", _task_topic),
        note="ack ids must be of the topic's own consumer",
    ),
    _QUEUE + "ExtendMessages": Rule(
        frozenset({SERVICE}),
        Owner("topic", _task_topic),
        note="ack ids must be of the topic's own consumer",
    ),
    _QUEUE + "ListTopics": ADMIN_ONLY,
    _QUEUE + "BeginTaskAttempt": _REPORT_ATTEMPT,
    _QUEUE + "ReportTaskEvent": _REPORT_ATTEMPT,
    _QUEUE + "CompleteTaskAttempt": _REPORT_ATTEMPT,
    # ServiceAPI: a replica's own API, for operators.
    _SERVICE + "DescribeService": _READ_REGISTRY,
    _SERVICE + "PauseService": ADMIN_ONLY,
    _SERVICE + "ResumeService": ADMIN_ONLY,
    _SERVICE + "DrainService": ADMIN_ONLY,
    _SERVICE + "ListRunningTasks": ADMIN_ONLY,
    # AuthAPI: keys are for admins; anyone may ask who they are.
    _AUTH + "CreateApiKey": ADMIN_ONLY,
    _AUTH + "GetApiKey": ADMIN_ONLY,
    _AUTH + "ListApiKeys": ADMIN_ONLY,
    _AUTH + "RotateApiKey": ADMIN_ONLY,
    _AUTH + "DeleteApiKey": ADMIN_ONLY,
    _AUTH + "GetCallerIdentity": Rule(AUTHENTICATED),
    # AgentsAPI and ResponsesAPI: views over sessions and tasks, for clients.
    **{
        _AGENTS + name: _CLIENT
        for name in (
            "CreateAgent",
            "GetAgent",
            "ListAgents",
            "DeleteAgent",
            "CreateAgentSession",
            "GetAgentSession",
            "ListAgentSessions",
            "DeleteAgentSession",
            "ForkAgentSession",
            "CreateTurn",
            "StreamTurn",
            "GetTurn",
            "ResumeTurn",
            "StreamResumeTurn",
            "GetStep",
        )
    },
    **{
        _RESPONSES + name: _CLIENT
        for name in (
            "CreateResponse",
            "StreamResponse",
            "GetResponse",
            "ListResponses",
            "ListInputItems",
            "DeleteResponse",
        )
    },
}


def rule_for(method: str) -> Rule | None:
    return POLICY.get(method)


def authorize(identity: Identity, method: str, request: Any) -> None:
    """PermissionDeniedError unless `identity` may call `method` with `request`."""
    rule = POLICY.get(method)
    if rule is None:
        raise PermissionDeniedError(f"{method} has no access policy; it is denied to everyone")
    rule.check(identity, method, request)


def markdown_table() -> str:
    """The policy as the Markdown table docs/security.md shows."""
    lines = ["| RPC | roles | also checked |", "|---|---|---|"]
    for method, rule in POLICY.items():
        service, _, name = method.strip("/").partition("/")
        roles = ", ".join(f"`{r}`" for r in rule.describe_roles())
        also = rule.note
        if rule.owner is not None:
            own = f"a service acts only for the service in `{rule.owner.field}`"
            also = f"{own}; {also}" if also else own
        lines.append(f"| `{service.rpartition('.')[2]}.{name}` | {roles} | {also} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
