"""The JetStream API error codes the mesh acts on, by name.

A JetStream API error carries an `err_code` (nats-py: `APIError.err_code`) that says
what went wrong more precisely than its HTTP-like `code`. nats-py defines no names for
them; these are the server's own (nats-server `server/errors.json`), so a search for
the name finds the server's description.
"""

from __future__ import annotations

# Creating streams, buckets and consumers that another process may have created first.
JS_STREAM_NAME_EXIST = 10058
"""JSStreamNameExistErr: a stream (or KV bucket) of this name exists with another config."""
JS_STREAM_INVALID_CONFIG = 10052
"""JSStreamInvalidConfigF: a config the server refuses, such as an update of what may not
change ("stream configuration update can not change storage type")."""
JS_CONSUMER_NAME_EXIST = 10013
"""JSConsumerNameExistErr: the consumer name is already in use."""
JS_CONSUMER_ALREADY_EXISTS = 10148
"""JSConsumerAlreadyExists: a consumer of this name exists with another config."""
JS_CONSUMER_WQ_NOT_UNIQUE = 10100
"""JSConsumerWQConsumerNotUniqueErr: "filtered consumer not unique on workqueue stream"
(another consumer of a work queue takes some of the same subjects)."""

# Compare-and-set writes (expected last sequence per subject) that lost the race.
JS_STREAM_WRONG_LAST_SEQUENCE = 10071
"""JSStreamWrongLastSequenceErrF: "wrong last sequence: {seq}"."""
JS_STREAM_WRONG_LAST_SEQUENCE_CONSTANT = 10164
"""JSStreamWrongLastSequenceConstantErr: "wrong last sequence" (newer servers)."""

# A cluster that is still forming: the request succeeds once it has formed.
JS_CLUSTER_NO_PEERS = 10005
"""JSClusterNoPeersErrF: no peers available to place the asset (yet)."""
JS_CLUSTER_NOT_AVAILABLE = 10008
"""JSClusterNotAvailErr: JetStream system temporarily unavailable (no meta leader yet)."""

# A store, or an account, out of room: the write is refused (jetstream/errors.py).
JS_INSUFFICIENT_RESOURCES = 10023
"""JSInsufficientResourcesErr: "insufficient resources" (a full store, on publish)."""
JS_STORAGE_RESOURCES_EXCEEDED = 10047
"""JSStorageResourcesExceededErr: "insufficient storage resources available"."""
JS_MEMORY_RESOURCES_EXCEEDED = 10028
"""JSMemoryResourcesExceededErr: "insufficient memory resources available"."""
JS_ACCOUNT_RESOURCES_EXCEEDED = 10002
"""JSAccountResourcesExceededErr: "resource limits exceeded for account"."""

WRONG_LAST_SEQUENCE = frozenset(
    {JS_STREAM_WRONG_LAST_SEQUENCE, JS_STREAM_WRONG_LAST_SEQUENCE_CONSTANT}
)
"""Either way a server says that a compare-and-set write lost."""
CLUSTER_FORMING = frozenset({JS_CLUSTER_NO_PEERS, JS_CLUSTER_NOT_AVAILABLE})
"""Answers of a cluster that is still forming (a peer not yet seen, no meta leader)."""
CONSUMER_EXISTS = frozenset({JS_CONSUMER_ALREADY_EXISTS, JS_CONSUMER_NAME_EXIST})
"""A durable consumer of that name exists already (with another config)."""
