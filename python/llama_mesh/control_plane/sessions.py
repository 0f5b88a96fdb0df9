"""The session RPCs: create, get, list, and delete (with the session's tasks, workflow
Contexts and lock)."""

from __future__ import annotations

import logging

from llama_mesh.control_plane.task_cancellation import cancel_task
from llama_mesh.core import proto_time
from llama_mesh.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
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
from llama_mesh.core.paging import page_size, paginate
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.kv_listing import KvListing
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)


class Sessions:
    """Sessions, stored in the `sessions` bucket."""

    def __init__(self, state: MeshState) -> None:
        self.state = state

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
        if session.overlap_policy == resources_pb2.OVERLAP_POLICY_UNSPECIFIED:
            session.overlap_policy = resources_pb2.OVERLAP_POLICY_QUEUE
        stamp = proto_time.now()
        session.create_time.CopyFrom(stamp)
        session.update_time.CopyFrom(stamp)
        if await self.state.sessions.create(session_id, session) is not None:
            logger.info("session %s created", session.name)
            return cp.CreateSessionResponse(session=session, created=True)
        if not request.allow_existing:
            raise AlreadyExistsError(
                f"session {session.name!r} exists already; set allow_existing to get it"
            )
        existing = await self.state.sessions.get(session_id, session.name)
        return cp.CreateSessionResponse(session=existing, created=False)

    async def get_session(self, request: cp.GetSessionRequest) -> cp.GetSessionResponse:
        session_id = parse_session_name(request.name)
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

    async def list_sessions(self, request: cp.ListSessionsRequest) -> cp.ListSessionsResponse:
        size = page_size(request.page_size)
        page = paginate(await self.state.sessions.scan(), size, request.page_token)
        sessions = [await self._with_usage(parse_session_name(s.name), s) for s in page.items]
        return cp.ListSessionsResponse(sessions=sessions, next_page_token=page.next_page_token)

    async def delete_session(self, request: cp.DeleteSessionRequest) -> cp.DeleteSessionResponse:
        session_id = parse_session_name(request.name)
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
            (self.state.contexts, topology.bucket("contexts")),
            (self.state.locks, topology.bucket("locks")),
        ):
            for key in await KvListing(self.state.js, bucket).keys(f"{session_id}.*"):
                await kv.delete(key)
        await self.state.usage.delete(session_id)
        await self.state.sessions.delete(session_id)
        logger.info("session %s deleted", request.name)
        return cp.DeleteSessionResponse()
