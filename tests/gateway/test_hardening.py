"""Attacks on the gateway's edge, each of which must now fail to do harm.

Raw HTTP/1.1 on a socket sends header bytes that httpx would refuse to send: every bad
value gets a 400 google.rpc.Status naming the header, never a 500 or a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import grpc
import httpx
import pytest

from llama_mesh_gateway import GatewayServer
from llama_mesh_gateway.metadata import MAX_METADATA_BYTES
from llama_mesh_gateway.status import MAX_MESSAGE_BYTES

from .conftest import Upstream, assert_status

BAD_BYTES = [
    pytest.param(b"caf\xc3\xa9", id="utf8"),
    pytest.param(b"\xff\xfe", id="latin1"),
    pytest.param(b"a\x01b", id="control"),
    pytest.param(b"a\x7fb", id="del"),
    pytest.param(b"a\tb", id="tab"),
]
FORWARDED = ["Authorization", "Host", "X-Forwarded-For", "Grpc-Metadata-Tenant"]


async def raw_request(url: str, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send `head` (request line and headers, no blank line) and return (status, JSON body)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            head + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
        )
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = response.partition(b"\r\n")
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in headers.lower(), response
    return int(status_line.split()[1]), json.loads(payload)


@pytest.mark.parametrize("value", BAD_BYTES)
@pytest.mark.parametrize("header", FORWARDED)
async def test_bytes_metadata_cannot_carry_are_400_naming_the_header(
    gateway: GatewayServer, caplog: pytest.LogCaptureFixture, header: str, value: bytes
) -> None:
    host = b"" if header == "Host" else b"\r\nHost: gw.example"
    head = b"GET /v1/meta HTTP/1.1" + host + b"\r\n" + header.encode() + b": " + value
    with caplog.at_level(logging.DEBUG):
        status, body = await raw_request(gateway.url, head)
    assert status == 400, body
    assert body["code"] == 3
    assert body["message"].startswith(f"header {header} has a byte")
    assert value.decode("latin-1") not in body["message"]  # a credential is never echoed
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_binary_value_goes_through_a_bin_header(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/meta", headers={"grpc-metadata-tenant-bin": "Y2Fmw6k="})
    assert resp.status_code == 200, resp.text
    assert resp.json()["labels"]["tenant-bin"] == "b64:Y2Fmw6k="


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (b"soon", "malformed"),
        (b"\xff\xfeS", "malformed"),
        (b"10", "malformed"),
        (b"123456789S", "malformed"),  # 9 digits
        (b"-5S", "malformed"),
        (b"0S", "positive"),
        (b"25H", "longer than 24H"),
        (b"99999999H", "longer than 24H"),  # used to overflow into an instant 504
    ],
)
async def test_grpc_timeout_is_parsed_with_limits(
    gateway: GatewayServer, value: bytes, fragment: str
) -> None:
    head = b"GET /v1/meta HTTP/1.1\r\nHost: gw\r\nGrpc-Timeout: " + value
    status, body = await raw_request(gateway.url, head)
    assert (status, body["code"]) == (400, 3), body
    assert body["message"].startswith("header Grpc-Timeout")
    assert fragment in body["message"]


async def test_the_longest_timeout_is_accepted(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/meta", headers={"grpc-timeout": "24H"})
    assert resp.status_code == 200, resp.text
    assert 24 * 3600 - 60 < resp.json()["ratio"] <= 24 * 3600


async def test_last_event_id_is_ascii_digits(gateway: GatewayServer) -> None:
    # "²" (latin-1 0xB2) passes str.isdigit() but is no number.
    head = b"GET /v1/streams/s:watch?count=1 HTTP/1.1\r\nHost: gw\r\nLast-Event-ID: \xb2"
    status, body = await raw_request(gateway.url, head)
    assert (status, body["code"]) == (400, 3), body
    assert body["message"] == "header Last-Event-ID is not a sequence number"


async def test_content_length_is_ascii_digits(gateway: GatewayServer) -> None:
    """h11 checks Content-Length; other ASGI servers may not, so the app checks it too."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/items",
        "raw_path": b"/v1/items",
        "query_string": b"",
        "headers": [(b"content-length", b"\xb2")],
    }
    await gateway.app(scope, receive, send)
    assert sent[0]["status"] == 400
    body = json.loads(sent[1]["body"])
    assert body["message"] == "header Content-Length is not a number"


async def test_oversized_metadata_is_431_naming_the_header(client: httpx.AsyncClient) -> None:
    """More than the upstream accepts used to come back as a random 429 from gRPC."""
    resp = await client.get("/v1/meta", headers={"authorization": "Bearer " + "x" * 15000})
    body = assert_status(resp, 431, 8)
    assert "Authorization" in body["message"] and str(MAX_METADATA_BYTES) in body["message"]
    many = {f"grpc-metadata-k{i}": "v" * 2000 for i in range(5)}
    many["grpc-metadata-big"] = "v" * 3000
    body = assert_status(await client.get("/v1/meta", headers=many), 431, 8)
    assert "Grpc-Metadata-Big" in body["message"]
    ok = await client.get("/v1/meta", headers={"authorization": "Bearer " + "x" * 6000})
    assert ok.status_code == 200, ok.text


async def test_credentials_are_forwarded_never_added(
    client: httpx.AsyncClient, gateway: GatewayServer
) -> None:
    resp = await client.get("/v1/meta")
    assert "authorization" not in resp.json()["labels"]
    resp = await client.get("/v1/meta", headers={"authorization": "Bearer caller"})
    assert resp.json()["labels"]["authorization"] == "Bearer caller"


async def test_a_long_upstream_message_is_truncated_not_429(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    """An upstream that echoes a 20 kB id in INVALID_ARGUMENT: its own status, cut short.

    gRPC clients refuse trailers over 8 KiB with RESOURCE_EXHAUSTED (429); the gateway's
    channel takes up to 64 KiB and the message it returns is at most 1 KiB.
    """
    code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
    long_id = "i" * 20_000
    resp = await client.post("/v1/fail", json={"small": code, "name": f"bad id {long_id!r}"})
    body = assert_status(resp, 400, 3)
    assert body["message"].startswith("bad id 'iii")
    assert body["message"].endswith("(truncated)")
    assert len(body["message"].encode()) <= MAX_MESSAGE_BYTES
    assert body["details"]  # the rich details survive


async def test_the_gateway_own_messages_are_truncated(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/items/x", params={"q" * 5000: "1"})
    body = assert_status(resp, 400, 3)
    assert body["message"].startswith("unknown query parameters: qqq")
    assert len(body["message"].encode()) <= MAX_MESSAGE_BYTES


async def test_a_bug_is_a_500_status_not_a_bare_traceback(
    gateway: GatewayServer, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("llama_mesh_gateway.app.build_request", broken)
    body = assert_status(await client.get("/v1/items/x"), 500, 13)
    assert body["message"] == "internal error in the gateway"
