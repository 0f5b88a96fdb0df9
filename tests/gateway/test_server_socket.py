"""The gateway's listening socket says TCP, so asyncio disables Nagle on its connections.

With protocol 0, asyncio leaves TCP_NODELAY off on accepted connections, and Nagle plus
the client's delayed ACK added ~40 ms to every response (found by the benchmark).
"""

from __future__ import annotations

import socket

from llama_mesh_gateway import GatewayServer


async def test_listening_socket_is_tcp_so_connections_get_nodelay() -> None:
    async with GatewayServer("127.0.0.1:1", host="127.0.0.1", port=0) as server:
        listening = server._socket
        assert listening is not None
        assert listening.proto == socket.IPPROTO_TCP
