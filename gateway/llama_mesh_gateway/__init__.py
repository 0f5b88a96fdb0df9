"""The llama-mesh REST gateway: HTTP/JSON transcoding from google.api.http rules.

Embed it as an ASGI app, or run it:

    from llama_mesh_gateway import GatewayServer, create_app, serve

    app = create_app("127.0.0.1:50051")                 # any ASGI server
    async with GatewayServer("127.0.0.1:50051", port=0) as server:
        print(server.url)                                # a real HTTP server
    await serve("127.0.0.1:50051", "127.0.0.1", 8080)    # until cancelled

or `python -m llama_mesh_gateway --upstream 127.0.0.1:50051 --port 8080`.
"""

from __future__ import annotations

from llama_mesh_gateway.app import Gateway, create_app
from llama_mesh_gateway.metrics_access import MetricsAccess
from llama_mesh_gateway.server import GatewayServer, serve
from llama_mesh_gateway.upstream_tls import UpstreamTls

__all__ = ["Gateway", "GatewayServer", "MetricsAccess", "UpstreamTls", "create_app", "serve"]
