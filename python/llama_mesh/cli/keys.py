"""`llama-mesh keys create | list | rotate | delete`: the mesh's API keys (admin only).

llama-mesh keys create --role client --id ci
llama-mesh keys rotate ci --grace 3600
"""

from __future__ import annotations

from typing import Annotated

import typer

from llama_mesh.cli.target import (
    ConnectTimeout,
    ControlPlaneOption,
    FileOption,
    Output,
    OutputOption,
    Target,
    out,
)
from llama_mesh.client import AsyncClient
from llama_mesh.v1 import auth_pb2


def _view(key: auth_pb2.ApiKey) -> dict[str, object]:
    return {
        "name": key.name,
        "roles": list(key.roles),
        "description": key.description,
        "namespace": key.namespace or None,
        "create_time": key.create_time.ToJsonString() if key.HasField("create_time") else None,
    }


def keys_create(
    role: Annotated[list[str], typer.Option(help="admin, client or service:ID (repeat).")],
    key_id: Annotated[str, typer.Option("--id", help="Key id (default: a new one).")] = "",
    description: Annotated[str, typer.Option(help="What the key is for.")] = "",
    namespace: Annotated[
        str, typer.Option(help="Confine the key to this namespace's sessions (a tenant).")
    ] = "",
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Issue an API key; prints its token, which is shown only now."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        token, key = await client.api_keys.create(
            role, key_id=key_id, description=description, namespace=namespace
        )
        target.emit({**_view(key), "token": token}, lambda: out.print(token, highlight=False))

    target.run(main)


def keys_list(
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """List API keys (never their secrets)."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        keys = [_view(k) for k in await client.api_keys.list()]

        def text() -> None:
            for k in keys:
                confined = f"  namespace {k['namespace']}" if k["namespace"] else ""
                out.print(f"{k['name']}  {','.join(k['roles'])}  {k['description']}{confined}")  # type: ignore[arg-type]

        target.emit(keys, text)

    target.run(main)


def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    grace: Annotated[float, typer.Option(help="Seconds the old secret keeps working.")] = 0.0,
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Issue a new secret for a key; prints the new token."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        token, key = await client.api_keys.rotate(key_id, grace=grace)
        target.emit({**_view(key), "token": token}, lambda: out.print(token, highlight=False))

    target.run(main)


def keys_delete(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    control_plane: ControlPlaneOption = None,
    file: FileOption = None,
    output: OutputOption = Output.text,
    connect_timeout: ConnectTimeout = 0.0,
) -> None:
    """Revoke a key at once."""
    target = Target(control_plane, file, output, connect_timeout)

    async def main(client: AsyncClient) -> None:
        await client.api_keys.delete(key_id)
        target.emit(
            {"deleted": f"apiKeys/{key_id}"}, lambda: out.print(f"apiKeys/{key_id} deleted")
        )

    target.run(main)
