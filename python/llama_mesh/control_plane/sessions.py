"""The session RPCs: create, get, list, and delete (with the session's tasks and its
saved workflow state).

A session expires once idle: its record carries a TTL (its own `ttl`, or the
deployment's default), renewed as tasks are created in it, at most once per tenth
of the TTL so that creating a task rarely costs a write. Each session also says how
long its finished tasks are kept (`task_ttl`), copied into each task it creates.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Literal

from llama_mesh.config.retention import DAY, MAX_TTL, RetentionConfig
from llama_mesh.control_plane import session_listing
from llama_mesh.control_plane.namespaces import require_visible, visible
from llama_mesh.control_plane.task_cancellation import cancel_task
from llama_mesh.core import proto_time
from llama_mesh.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from llama_mesh.core.lifecycle import ACTIVE_STATES
from llama_mesh.core.limits import check_labels
from llama_mesh.core.names import (
    TaskName,
    check_session_id,
    new_id,
    parse_session_name,
    session_name,
)
from llama_mesh.jetstream import session_index
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.kv_listing import KvListing
from llama_mesh.rpc.identity import caller
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)


def _ttl(
    session: resources_pb2.Session, field: Literal["ttl", "task_ttl"], default: float
) -> float:
    """The session's `field` (a TTL), set to `default` if it was not given."""
    if not session.HasField(field):
        getattr(session, field).CopyFrom(proto_time.duration(default))
        return default
    ttl = proto_time.seconds(getattr(session, field))
    if not 1 <= ttl <= MAX_TTL:
        raise InvalidArgumentError(
            f"session.{field} must be from 1 second to {MAX_TTL / DAY:g} days (got {ttl:g} s)"
        )
    return ttl


class Sessions:
    """Sessions, stored in the `sessions` bucket."""

    def __init__(self, state: MeshState, retention: RetentionConfig) -> None:
        self.state = state
        self.retention = retention

    async def create_session(self, request: cp.CreateSessionRequest) -> cp.CreateSessionResponse:
        session_id = check_session_id(request.session_id) if request.session_id else new_id()
        check_labels("session.labels", request.session.labels)
        session = resources_pb2.Session()
        session.CopyFrom(request.session)
        session.name = session_name(session_id)
        if session.token_budget < 0:
            raise InvalidArgumentError(
                f"session.token_budget is {session.token_budget}: give a number of tokens, "
                "or 0 for no limit"
            )
        session.ClearField("usage")  # output only: counted by the mesh
        session.namespace = caller().namespace  # output only: the creator's
        if session.overlap_policy not in resources_pb2.OverlapPolicy.values():
            # It was stored as sent, and then acted as QUEUE.
            raise InvalidArgumentError(
                f"session.overlap_policy {session.overlap_policy} is not one of "
                f"{resources_pb2.OverlapPolicy.keys()[1:]}"
            )
        if session.overlap_policy == resources_pb2.OVERLAP_POLICY_UNSPECIFIED:
            session.overlap_policy = resources_pb2.OVERLAP_POLICY_QUEUE
        ttl = _ttl(session, "ttl", self.retention.idle_session_ttl)
        _ttl(session, "task_ttl", self.retention.finished_task_ttl)
        stamp = proto_time.now()
        session.create_time.CopyFrom(stamp)
        session.update_time.CopyFrom(stamp)
        session.expire_time.CopyFrom(proto_time.timestamp(time.time() + ttl))
        indexed = await session_index.add(self.state.js, self.state.topology, session, ttl)
        if await self.state.sessions.create(session_id, session, ttl=ttl) is not None:
            logger.info("session %s created", session.name)
            return cp.CreateSessionResponse(session=session, created=True)
        await session_index.remove(self.state.js, self.state.topology, indexed)
        existing = await self.state.sessions.get(session_id, session.name)
        if not visible(existing):
            # Another namespace has it; say no more than that the id is taken.
            raise AlreadyExistsError(f"session id {session_id!r} is taken: choose another")
        if not request.allow_existing:
            raise AlreadyExistsError(
                f"session {session.name!r} exists already; set allow_existing to get it"
            )
        return cp.CreateSessionResponse(session=existing, created=False)

    async def get_session(self, request: cp.GetSessionRequest) -> cp.GetSessionResponse:
        session_id = parse_session_name(request.name)
        await require_visible(self.state, request.name)
        session = await self.state.sessions.get(session_id, request.name)
        return cp.GetSessionResponse(session=await self._with_usage(session_id, session))

    async def _with_usage(
        self, session_id: str, session: resources_pb2.Session
    ) -> resources_pb2.Session:
        """The session with the tokens its tasks used (kept in the usage bucket)."""
        found = await self.state.usage.find(session_id)
        if found is not None:
            session.usage.CopyFrom(found[0])
        return session

    async def in_use(
        self,
        session_id: str,
        name: str,
        found: tuple[resources_pb2.Session, int] | None = None,
    ) -> resources_pb2.Session:
        """The session, for a task about to be created in it: its expiry is pushed
        back when a tenth of its TTL has passed since it last was. A session made
        without TTLs (by an older version) takes the deployment's. `found` is the
        session's record and revision if the caller has just read them."""
        if found is None:
            found = await self.state.sessions.find(session_id)
        if found is None:
            raise NotFoundError(f"session {name!r} not found")
        session = found[0]
        if not session.HasField("ttl") or not session.HasField("task_ttl"):
            _ttl(session, "ttl", self.retention.idle_session_ttl)
            _ttl(session, "task_ttl", self.retention.finished_task_ttl)
            session.ClearField("expire_time")  # renewed below, with the TTLs
        ttl = proto_time.seconds(session.ttl)
        left = proto_time.epoch_seconds(session.expire_time) - time.time()
        if session.HasField("expire_time") and left > ttl * 0.9:
            return session
        renewed = resources_pb2.Session()
        renewed.CopyFrom(session)
        renewed.expire_time.CopyFrom(proto_time.timestamp(time.time() + ttl))

        def renew(current: resources_pb2.Session) -> None:
            current.ttl.CopyFrom(renewed.ttl)
            current.task_ttl.CopyFrom(renewed.task_ttl)
            current.expire_time.CopyFrom(renewed.expire_time)

        state = self.state
        indexed = await session_index.add(state.js, state.topology, renewed, ttl)
        previous = session
        try:
            session, _ = await state.sessions.mutate_from(
                session_id, name, renew, found, ttl=lambda _: ttl
            )
        except NotFoundError:  # expired meanwhile: the task still runs
            await session_index.remove(state.js, state.topology, indexed)
            return session
        await session_index.trim(state.nc, state.js, state.topology, previous, ttl)
        # The tokens its tasks used expire with it (a second later, as the worker's
        # token_ledger keeps them).
        with contextlib.suppress(NotFoundError):
            await self.state.usage.mutate(session_id, name, lambda _: None, ttl=lambda _: ttl + 1)
        return session

    async def list_sessions(self, request: cp.ListSessionsRequest) -> cp.ListSessionsResponse:
        return await session_listing.list_sessions(self.state, request)

    async def delete_session(self, request: cp.DeleteSessionRequest) -> cp.DeleteSessionResponse:
        session_id = parse_session_name(request.name)
        await require_visible(self.state, request.name)
        await self.state.sessions.get(session_id, request.name)
        tasks = await self.state.tasks.scan(f"{session_id}.*")
        active = [t for _, t in tasks if t.state in ACTIVE_STATES]
        if active and not request.force:
            raise FailedPreconditionError(
                f"session {request.name!r} has {len(active)} active task(s), e.g. "
                f"{active[0].name!r}: cancel them or delete with force"
            )
        for task in active:
            await cancel_task(self.state, TaskName.parse(task.name), "session deleted")
        for key, _ in tasks:
            await self.state.tasks.delete(key)
        topology = self.state.topology
        for kv, bucket in (
            (self.state.session_state, topology.bucket("session_state")),
            (self.state.waiting, topology.bucket("waiting")),
        ):
            for key in await KvListing(self.state.js, bucket).keys(f"{session_id}.*"):
                await kv.delete(key)
        await self.state.usage.delete(session_id)
        await self.state.sessions.delete(session_id)
        logger.info("session %s deleted", request.name)
        return cp.DeleteSessionResponse()
