"""The web console's static files, served at `/console/` (docs/console.md).

The console is a page of TypeScript compiled to plain ES modules (console/src ->
console/static/js, by `make gen`); it talks to the same REST API and SSE streams as
any client, so the gateway only hands out files: no templating, no API of its own.
`/console` redirects to `/console/` so that the page's relative URLs resolve; any
other path is a file under the static directory (starlette's StaticFiles refuses
`..` and symlinks out of it).
"""

from __future__ import annotations

from pathlib import Path

import grpc
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from llama_mesh_gateway.status import GatewayError

CONSOLE_PATH = "/console"
STATIC_DIR = Path(__file__).parent / "console_static"


class ConsoleFiles:
    """ASGI app for the paths under CONSOLE_PATH."""

    def __init__(self, directory: Path = STATIC_DIR) -> None:
        self.directory = directory
        self._files = StaticFiles(directory=directory, html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == CONSOLE_PATH:
            query = scope.get("query_string", b"").decode("latin-1")
            target = CONSOLE_PATH + "/" + ("?" + query if query else "")
            await RedirectResponse(target, status_code=308)(scope, receive, send)
            return

        # The page can be cached, but must be revalidated: a new release of the
        # gateway ships new files under the same names.
        async def send_no_cache(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"cache-control", b"no-cache")]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._files({**scope, "root_path": CONSOLE_PATH}, receive, send_no_cache)
        except HTTPException as e:
            # Answered like every other gateway error: a google.rpc.Status body.
            if e.status_code == 405:
                raise GatewayError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"method {scope['method']} is not allowed on {scope['path']}; "
                    "allowed: GET, HEAD",
                    http=405,
                    headers={"allow": "GET, HEAD"},
                ) from None
            raise GatewayError(
                grpc.StatusCode.NOT_FOUND, f"the console has no file {scope['path']}"
            ) from None
