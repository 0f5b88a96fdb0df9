"""`llama-mesh run` rides out a control-plane restart: it fails at once when nothing
listens (tests/cli/test_commands.py), but a control plane it reached once is waited for."""

from __future__ import annotations

import asyncio
import contextlib
import json

from llama_mesh.config import ServiceConfig
from llama_mesh.control_plane.server import ControlPlaneServer
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.worker.runtime import ServiceRuntime

from .conftest import CLI
from mesh_workflows import SlowWorkflow


async def test_run_outlives_a_control_plane_restart(nats: EmbeddedNats) -> None:
    first_cp = contextlib.AsyncExitStack()
    first = await first_cp.enter_async_context(ControlPlaneServer.start([nats.url]))
    port = int(first.address.rpartition(":")[2])
    try:
        async with ServiceRuntime.start(SlowWorkflow(), ServiceConfig("slow"), first.address):
            run = await asyncio.create_subprocess_exec(
                str(CLI),
                *("run", "slow", "-a", "arg1=r", "-a", "seconds=1.5", "-c", first.address),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            assert run.stderr is not None
            async with asyncio.timeout(90):
                seen = b""
                while b"SlowStarted" not in seen:
                    line = await run.stderr.readline()
                    assert line, f"run ended before the workflow started: {seen!r}"
                    seen += line
                await first_cp.aclose()  # the control plane goes away mid-run
                async with ControlPlaneServer.start([nats.url], port=port):
                    out, err = await run.communicate()
            assert run.returncode == 0, (seen + err).decode()
            assert json.loads(out) == "r_slow"
    finally:
        await first_cp.aclose()
