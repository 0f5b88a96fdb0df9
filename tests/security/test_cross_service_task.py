"""A replica refuses a task of another service that reaches its queue (forged or
misrouted): the issue's `approval` task published on `tasks.echo` is not run by echo."""

from __future__ import annotations

from llama_mesh.core.lifecycle import WAITING
from llama_mesh.core.names import TaskName
from llama_mesh.launch.local import LocalMesh
from llama_mesh.v1 import resources_pb2
from llama_mesh.worker.attempt import take

from mesh_workflows import ApprovalWorkflow, EchoWorkflow


async def test_a_replica_refuses_a_task_of_another_service() -> None:
    async with LocalMesh({"echo": EchoWorkflow(), "approval": ApprovalWorkflow()}) as mesh:
        session = await mesh.client.create_session()
        handle = await session.create_task("approval", question="ship it?")
        async for event in handle.events():
            if event.state == "WAITING_FOR_INPUT":
                break
        [echo] = mesh.services["echo"]
        echo.pause()  # the forged message waits for the test, not for the replica
        state = echo._worker.state if echo._worker else None
        assert state is not None
        forged = resources_pb2.Envelope(
            id="forged", task_assignment=resources_pb2.TaskAssignment(task=handle.task)
        )
        await state.js.publish(state.topology.task_subject("echo"), forged.SerializeToString())
        sub = await state.js.pull_subscribe_bind("svc_echo", stream=state.topology.task_stream)
        try:
            [msg] = await sub.fetch(1, timeout=10)
            assert echo._worker is not None
            assert await take(echo._worker, msg, TaskName.parse(handle.name)) is None
        finally:
            await sub.unsubscribe()
        task = await handle.get()
        assert task.state == WAITING and task.attempt_count == 1  # echo never ran it
        await handle.send_event("HumanResponseEvent", response="yes")
        assert await handle.result() == {"answer": "yes"}
