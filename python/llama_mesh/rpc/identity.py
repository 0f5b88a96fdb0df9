"""Who is calling: the identity a bearer token gives, and its roles.

    admin            everything
    client           sessions, tasks, their events and answers
    service:{id}     replicas and tasks of service {id} only

The auth interceptor sets the caller of each call; servicers read it with `caller()`
to check what only they can (e.g. that a task belongs to the calling service).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from dataclasses import dataclass

from llama_mesh.core.access import ADMIN, SERVICE
from llama_mesh.core.errors import PermissionDeniedError


@dataclass(frozen=True)
class Identity:
    """An authenticated caller."""

    subject: str
    roles: frozenset[str]
    # The namespace (tenant) its sessions belong to; "" for none.
    namespace: str = ""

    @classmethod
    def of(cls, subject: str, roles: Iterable[str], namespace: str = "") -> Identity:
        return cls(subject, frozenset(roles), namespace)

    @property
    def scope(self) -> str | None:
        """The namespace it is confined to, or None: it sees every namespace (admin;
        a service, which runs tasks of every namespace; a caller with none)."""
        if not self.namespace or self.is_admin or self.services:
            return None
        return self.namespace

    def sees(self, namespace: str) -> bool:
        """Whether it may see a session of `namespace`."""
        return self.scope is None or self.scope == namespace

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def services(self) -> frozenset[str]:
        """The services this caller may act for."""
        prefix = f"{SERVICE}:"
        return frozenset(r[len(prefix) :] for r in self.roles if r.startswith(prefix))

    def kinds(self) -> frozenset[str]:
        """Its roles without their service ids: {"admin", "client", "service"}."""
        return frozenset(r.partition(":")[0] for r in self.roles)

    def acts_for(self, service_id: str) -> bool:
        return self.is_admin or service_id in self.services

    def require_service(self, service_id: str, what: str) -> None:
        """PermissionDeniedError unless the caller is admin or `service:{service_id}`."""
        if not self.acts_for(service_id):
            raise PermissionDeniedError(
                f"{self.subject} may not {what}: it needs role 'service:{service_id}' or 'admin'"
                f" (it has {sorted(self.roles)})"
            )

    def require_admin(self, what: str) -> None:
        if not self.is_admin:
            raise PermissionDeniedError(
                f"{self.subject} may not {what}: it needs role 'admin' "
                f"(it has {sorted(self.roles)})"
            )


# The mesh's own components when authentication is off: they may do everything.
UNAUTHENTICATED_ADMIN = Identity.of("anonymous (authentication off)", [ADMIN])

_caller: contextvars.ContextVar[Identity] = contextvars.ContextVar(
    "llama_mesh_caller", default=UNAUTHENTICATED_ADMIN
)


def caller() -> Identity:
    """The identity of the call being served (admin when authentication is off)."""
    return _caller.get()


def set_caller(identity: Identity) -> contextvars.Token[Identity]:
    return _caller.set(identity)
