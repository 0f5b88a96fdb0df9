"""JetStream refusals a caller can act on, as the mesh's typed errors.

Every write to the store goes through ``store_errors``: a store that is full becomes
ResourceExhaustedError saying what is full and what frees it (not INTERNAL, and not
an error a runtime would retry at once, forever).

    with store_errors("recording task sessions/s/tasks/t"):
        await js.publish(subject, data)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from nats.js.errors import APIError

from llama_mesh.core.errors import ResourceExhaustedError
from llama_mesh.jetstream.api_errors import (
    JS_ACCOUNT_RESOURCES_EXCEEDED,
    JS_INSUFFICIENT_RESOURCES,
    JS_MEMORY_RESOURCES_EXCEEDED,
    JS_STORAGE_RESOURCES_EXCEEDED,
)

# What is full, by the JetStream error code that says so.
_FULL = {
    JS_INSUFFICIENT_RESOURCES: "the NATS server's JetStream storage is full",
    JS_STORAGE_RESOURCES_EXCEEDED: "the NATS server's JetStream file storage is full",
    JS_MEMORY_RESOURCES_EXCEEDED: "the NATS server's JetStream memory storage is full",
    JS_ACCOUNT_RESOURCES_EXCEEDED: "the NATS account's JetStream limits are reached",
}


def is_store_full(err: BaseException) -> bool:
    return isinstance(err, APIError) and getattr(err, "err_code", None) in _FULL


@contextlib.contextmanager
def store_errors(doing: str) -> Iterator[None]:
    """Raise ResourceExhaustedError, naming what is full, for a write the store refused
    for lack of room while `doing` it."""
    try:
        yield
    except APIError as err:
        code = getattr(err, "err_code", None)  # not every subclass has one
        if code not in _FULL:
            raise
        raise ResourceExhaustedError(
            f"{_FULL[code]} ({err.description}) while {doing}: free space on it "
            "(shorter retention, fewer finished tasks) or raise its max_file_store"
        ) from err
