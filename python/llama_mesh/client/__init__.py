"""The Python client of the mesh: sessions, tasks and their events over gRPC.

Imports nothing from the servers (an import-linter contract says so): a program that
only calls the mesh installs and loads the client alone.

    async with AsyncClient("127.0.0.1:50051") as client:
        session = await client.create_session()
        print(await session.run("echo", arg1="hello"))
"""

from llama_mesh.client._async import AsyncClient
from llama_mesh.client._credentials import Credentials
from llama_mesh.client._session import AsyncSession
from llama_mesh.client._sync import Client, Session, SyncTaskHandle
from llama_mesh.client._task_handle import TaskHandle
from llama_mesh.client._task_view import StreamedEvent, task_result

__all__ = [
    "AsyncClient",
    "AsyncSession",
    "Client",
    "Credentials",
    "Session",
    "StreamedEvent",
    "SyncTaskHandle",
    "TaskHandle",
    "task_result",
]
