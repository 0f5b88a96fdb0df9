"""Size limits of what the mesh stores, checked where data enters it.

A task's record, its assignment and each of its events travel as one NATS message,
and NATS refuses a message over its ``max_payload`` (1 MiB unless the server is told
otherwise). So each field a caller or a workflow fills has a limit, chosen so that a
record with every field at its limit still fits in 1 MiB, and each limit is checked
where the data comes in (an RPC: INVALID_ARGUMENT naming the field and the limit; a
workflow's result or event: the task fails once, saying so), never by NATS refusing
the write later.

    check_bytes("task.input", task.input.ByteSize(), MAX_INPUT_BYTES)
"""

from __future__ import annotations

from collections.abc import Mapping

from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.v1 import resources_pb2

KIB = 1024

MAX_INPUT_BYTES = 256 * KIB
"""A task's input (serialized)."""
MAX_RESULT_BYTES = 256 * KIB
"""A workflow's result."""
MAX_EVENT_BYTES = 256 * KIB
"""The payload of one event: streamed by a workflow, or sent into a waiting task."""
MAX_CONTEXT_BYTES = 512 * KIB
"""A session's saved workflow Context (JSON), per service."""
MAX_LABELS = 64
MAX_LABEL_KEY_CHARS = 63
MAX_LABEL_VALUE_CHARS = 256
MAX_REQUEST_ID_CHARS = 128
MAX_REASON_BYTES = 1 * KIB
"""A cancel reason (it becomes the task's error message)."""
MAX_ERROR_MESSAGE_BYTES = 8 * KIB
"""An error message kept in a task's record (longer ones are cut)."""
MAX_TYPE_NAME_CHARS = 256
"""An event type name."""
MAX_SERVICE_BYTES = 256 * KIB
"""A service's definition: description, input schema, tools, event types."""
MAX_DESCRIPTION_BYTES = 4 * KIB
"""A service's description."""
MAX_ID_CHARS = 128
"""A replica id, a runtime name."""
MAX_ADDRESS_CHARS = 256
MAX_ENVELOPE_BYTES = 768 * KIB
"""A message an operator publishes raw through the Queue API."""
MAX_METADATA_PAIRS = 16
"""A response's `metadata` (OpenAI's limits: 16 pairs, keys of 64 characters, text
values of 512), kept with the response."""
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_AGENT_CONFIG_BYTES = 128 * KIB
"""An agent's configuration (serialized): each of its turns carries it in the turn's
task input, with room left there for the turn's messages."""

_CUT = "… (cut)"


def check_bytes(field: str, size: int, limit: int, advice: str = "") -> None:
    """InvalidArgumentError naming `field` and `limit` if `size` (bytes) is over it."""
    if size > limit:
        raise InvalidArgumentError(
            f"{field} is {size} bytes, over the limit of {limit} bytes"
            + (f": {advice}" if advice else "")
        )


def check_text(field: str, text: str, limit: int) -> None:
    """InvalidArgumentError if `text` is longer than `limit` bytes (UTF-8)."""
    check_bytes(field, len(text.encode("utf-8", "replace")), limit)


def check_chars(field: str, text: str, limit: int) -> None:
    """InvalidArgumentError if `text` is longer than `limit` characters."""
    if len(text) > limit:
        raise InvalidArgumentError(
            f"{field} is {len(text)} characters, over the limit of {limit} characters"
        )


def check_labels(field: str, labels: Mapping[str, str]) -> None:
    """At most MAX_LABELS labels, keys and values within their lengths."""
    if len(labels) > MAX_LABELS:
        raise InvalidArgumentError(
            f"{field} has {len(labels)} labels, over the limit of {MAX_LABELS}"
        )
    for key, value in labels.items():
        if not key:
            raise InvalidArgumentError(f"{field} has an empty key")
        check_chars(f"{field} key {key[:40]!r}", key, MAX_LABEL_KEY_CHARS)
        check_chars(f"{field}[{key!r}]", value, MAX_LABEL_VALUE_CHARS)


def check_event_sizes(event: resources_pb2.TaskEvent, field: str) -> None:
    """A task event a runtime reports fits: its type, payload (the result, on success)
    and error message."""
    check_chars(f"{field}.type", event.type, MAX_TYPE_NAME_CHARS)
    if event.state == resources_pb2.TASK_STATE_SUCCEEDED:
        check_bytes(f"{field}.payload (the result)", event.payload.ByteSize(), MAX_RESULT_BYTES)
    else:
        check_bytes(f"{field}.payload", event.payload.ByteSize(), MAX_EVENT_BYTES)
    check_text(f"{field}.error.message", event.error.message, MAX_ERROR_MESSAGE_BYTES)


def cut(text: str, limit: int = MAX_ERROR_MESSAGE_BYTES) -> str:
    """`text` cut to at most `limit` bytes (UTF-8), saying that it was cut."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    keep = limit - len(_CUT.encode())
    return data[:keep].decode("utf-8", "ignore") + _CUT
