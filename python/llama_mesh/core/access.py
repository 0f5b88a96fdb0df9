"""The pure parts of access control: role names and the API key token format.

    admin            everything
    client           sessions, tasks, their events and answers
    service:{id}     replicas and tasks of service {id} only

An API key token is `lmk_{key id}.{secret}`: the id finds the stored key, the secret
(256 random bits) is compared with the SHA-256 stored for it. A fast hash is enough
for secrets of that strength (as for GitHub's tokens); nothing here is a password.

    token, digest = new_secret("ci")
    key_id, secret = parse_token(token)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from llama_mesh.core import proto_time
from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.v1 import auth_pb2

ADMIN = "admin"
CLIENT = "client"
SERVICE = "service"
_ROLE = re.compile(r"admin|client|service:[a-z0-9][a-z0-9_-]{0,62}")

TOKEN_PREFIX = "lmk_"
KEY_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_TOKEN = re.compile(r"lmk_([a-z0-9][a-z0-9_-]{0,62})\.([A-Za-z0-9_-]{20,128})")


def check_role(role: str) -> str:
    """`role` if it is one the mesh knows; InvalidArgumentError otherwise."""
    if not _ROLE.fullmatch(role):
        raise InvalidArgumentError(
            f"{role!r} is not a role: expected 'admin', 'client' or 'service:{{service id}}'"
        )
    return role


def service_role(service_id: str) -> str:
    return f"{SERVICE}:{service_id}"


def check_key_id(key_id: str) -> str:
    if not KEY_ID.fullmatch(key_id):
        raise InvalidArgumentError(
            f"{key_id!r} is not a valid API key id: 1-63 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return key_id


def key_name(key_id: str) -> str:
    return f"apiKeys/{key_id}"


def parse_key_name(name: str) -> str:
    prefix, _, key_id = name.partition("/")
    if prefix != "apiKeys" or not KEY_ID.fullmatch(key_id):
        raise InvalidArgumentError(f"{name!r} is not an API key name: expected 'apiKeys/{{id}}'")
    return key_id


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(key_id: str) -> tuple[str, str]:
    """A new token for key `key_id`, and the digest to store."""
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}{key_id}.{secret}", digest(secret)


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of an API key token; None if it is not one."""
    match = _TOKEN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def opens(stored: auth_pb2.StoredApiKey, secret: str, now: float) -> bool:
    """Whether `secret` opens the stored key at time `now` (not expired; the current
    secret, or the previous one during its grace period)."""
    key = stored.api_key
    if key.HasField("expire_time") and proto_time.epoch_seconds(key.expire_time) <= now:
        return False
    given = digest(secret)
    if hmac.compare_digest(given, stored.secret_sha256):
        return True
    return (
        bool(stored.previous_secret_sha256)
        and proto_time.epoch_seconds(stored.previous_expire_time) > now
        and hmac.compare_digest(given, stored.previous_secret_sha256)
    )


NAMESPACE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def check_namespace(namespace: str, field: str = "namespace") -> str:
    """A namespace (tenant) name: a DNS label, as Kubernetes namespaces are."""
    if not NAMESPACE.fullmatch(namespace):
        raise InvalidArgumentError(
            f"{field} {namespace!r} is not a namespace: 1-63 of a-z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
    return namespace
