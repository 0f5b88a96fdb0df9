"""The REST gateway in its own process, with a JSON ready line like `llama-mesh serve`.

    python bench/gateway_proc.py --upstream 127.0.0.1:50051   # prints {"ready": true, "url": ...}

`python -m llama_mesh_gateway` serves on a fixed port and reports readiness only in its
log; this runs the same `serve()` on a port the OS picks and prints where it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal

from llama_mesh_gateway.server import GatewayServer, serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    def ready(server: GatewayServer) -> None:
        print(json.dumps({"ready": True, "component": "gateway", "url": server.url}), flush=True)

    async def run() -> None:
        # SIGTERM cancels serve(), which stops the server and returns normally (uvicorn's
        # own handlers would re-raise the signal and kill a profiler before it writes).
        main_task = asyncio.current_task()
        assert main_task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, main_task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(args.upstream, args.host, 0, on_ready=ready)

    asyncio.run(run())


if __name__ == "__main__":
    main()
