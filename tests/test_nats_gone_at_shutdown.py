"""A control plane whose NATS is gone by the time it stops exits, cleanly
(jetstream/closing.py).

`up` killed: its nats-server (PR_SET_PDEATHSIG) and its children (stdin closed) stop
together, and a control plane stopped while its NATS client was reconnecting stayed in
asyncio.run for ever (before launch/signals.py's ORPHAN_GRACE cut it short): the
client's close() cancelled the reconnect loop as one of its connection attempts failed,
Python 3.11's asyncio.wait_for dropped that cancel, and the loop went on. The test
injects exactly that (`lost_cancel`): once the server is gone, every reconnection
attempt waits until it is cancelled and then fails as refused, with no pause between
attempts (so every cancel lands in one). In both cases something is published while
the client reconnects, which close() flushed to the dead socket (ConnectionResetError:
exit code 4). The process must exit with code 0: a hang fails the test's timeout, and
the orphan deadline would exit with ORPHAN_EXIT_CODE.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap

import pytest

from llama_mesh.launch import signals
from llama_mesh.launch.child_pipes import read_ready_line
from llama_mesh.launch.nats_server import EmbeddedNats

PUBLISHED = b"published while reconnecting"
ATTEMPT = b"reconnect attempt under way"

# `llama-mesh serve control-plane ...` with the fault above injected into nats-py.
FAULT = textwrap.dedent(
    f"""
    import asyncio
    import os
    import sys

    import nats
    from nats.aio.transport import TcpTransport

    from llama_mesh.cli import main

    connect = nats.connect

    async def no_server(self, uri, buffer_size, connect_timeout):
        print({ATTEMPT.decode()!r}, file=sys.stderr, flush=True)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # What asyncio.wait_for (3.11) raises when the cancel lands as it fails.
            raise ConnectionRefusedError(111, "Connect call failed") from None

    async def faulty_connect(*args, **kwargs):
        disconnected = kwargs["disconnected_cb"]

        async def on_disconnect():
            await disconnected()
            if nc.is_reconnecting:  # not when close() says so
                await nc.publish("probe", b"queued while reconnecting")
                print({PUBLISHED.decode()!r}, file=sys.stderr, flush=True)

        kwargs.update(disconnected_cb=on_disconnect)
        if os.environ.get("LOST_CANCEL"):
            kwargs.update(reconnect_time_wait=0)
        nc = await connect(*args, **kwargs)
        if os.environ.get("LOST_CANCEL"):
            TcpTransport.connect = no_server  # from now on no server answers
        return nc

    nats.connect = faulty_connect
    main()
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("lost_cancel", [True, False], ids=["cancel-lost", "cancel-heard"])
async def test_a_control_plane_stopped_while_nats_is_gone_exits_cleanly(
    nats: EmbeddedNats, lost_cancel: bool
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FAULT,
        "serve",
        "control-plane",
        "--nats",
        nats.url,
        "--port",
        "0",
        "--watch-stdin",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LOST_CANCEL": "1" if lost_cancel else ""},
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    try:
        assert await read_ready_line(process.stdout) is not None
        await nats.stop()
        # Its client noticed and published meanwhile (and, with the fault, a reconnect
        # attempt is under way).
        mark = ATTEMPT if lost_cancel else PUBLISHED
        lines: list[bytes] = []
        while mark not in (line := await process.stderr.readline()):
            assert line, b"".join(lines).decode()
            lines.append(line)
        process.stdin.close()  # the supervisor is gone (up was killed)
        code = await process.wait()
        stderr = b"".join(lines) + await process.stderr.read()
        assert code == 0, (code, signals.ORPHAN_EXIT_CODE, stderr.decode())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
