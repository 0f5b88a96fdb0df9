"""A page token goes on only the listing that gave it: one from another listing, or
made up, is INVALID_ARGUMENT, not taken as a position in this one."""

from __future__ import annotations

import base64

import grpc
import pytest

from llama_mesh.launch.local import LocalMesh
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import control_plane_pb2_grpc, queue_pb2, queue_pb2_grpc

from mesh_workflows import ApprovalWorkflow, EchoWorkflow


async def test_a_token_of_another_listing_or_made_up_is_refused(nats: EmbeddedNats) -> None:
    workflows = {"approval": ApprovalWorkflow(), "echo": EchoWorkflow()}
    async with LocalMesh(workflows, nats_url=nats.url) as mesh:
        channel = mesh.client._channel
        control = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
        queue = queue_pb2_grpc.QueueAPIStub(channel)
        first = await control.ListServices(cp.ListServicesRequest(page_size=1))
        rest = await control.ListServices(
            cp.ListServicesRequest(page_size=1, page_token=first.next_page_token)
        )
        assert [s.name for s in (*first.services, *rest.services)] == [
            "services/approval",
            "services/echo",
        ]
        for _ in range(2):
            await control.CreateSession(cp.CreateSessionRequest())
        sessions = await control.ListSessions(cp.ListSessionsRequest(page_size=1))
        assert sessions.next_page_token
        # Each was taken as a position: "zzzz" gave an empty page, another listing's
        # token a page from wherever its text sorted.
        made_up = base64.urlsafe_b64encode(b"zzzz").decode()
        for token in (sessions.next_page_token, made_up):
            with pytest.raises(grpc.aio.AioRpcError) as services:
                await control.ListServices(cp.ListServicesRequest(page_token=token))
            assert services.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "previous page of this listing (services)" in str(services.value.details())
            with pytest.raises(grpc.aio.AioRpcError) as topics:
                await queue.ListTopics(queue_pb2.ListTopicsRequest(page_token=token))
            assert topics.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as crossed:
            await queue.ListTopics(queue_pb2.ListTopicsRequest(page_token=first.next_page_token))
        assert crossed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
