"""Closing a NATS connection for good, also when its server is gone.

nats-py's ``close()`` cancels the client's reconnect loop, but on Python 3.11 a cancel
that lands as one of the loop's connection attempts fails is lost: ``asyncio.wait_for``
raises the attempt's ConnectionRefusedError instead (fixed in 3.12), the loop takes it
for one more refused attempt, and goes on trying every ``reconnect_time_wait`` (2 s).
At exit ``asyncio.run`` then waits for that task for ever: a control plane whose NATS
was gone by the time it stopped (`up` killed: its nats-server and it stop together)
never exited. With no server left in its pool the loop ends by itself on its next turn
(NoServersError), whether the cancel reached it or not.

``close()`` also raises ConnectionResetError when it flushes what was published while
reconnecting to a server that is gone; that cannot be sent any more.

    nc = await nats.connect(...)
    try:
        ...
    finally:
        await close_connection(nc)
"""

from __future__ import annotations

import logging

from nats.aio.client import Client

logger = logging.getLogger(__name__)


async def close_connection(nc: Client) -> None:
    """Close `nc`; its reconnect loop, if it had one, has ended when this returns
    (close() waits for it up to reconnect_time_wait, and it ends on its next turn)."""
    if nc.is_closed:
        return
    nc.set_server_pool([])
    try:
        await nc.close()
    except OSError as err:
        logger.info("nats: closed; what was queued while reconnecting was not sent (%r)", err)
