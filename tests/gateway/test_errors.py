"""Errors: the gRPC->HTTP table, Status JSON with details, and bad input of every kind."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from llama_mesh_gateway.status import HTTP_STATUS

from .conftest import CompiledApi, Upstream, assert_status, gateway_client

TABLE = {
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


def test_table_is_the_standard_one() -> None:
    assert {c.name: s for c, s in HTTP_STATUS.items() if c is not grpc.StatusCode.OK} == TABLE
    assert HTTP_STATUS[grpc.StatusCode.OK] == 200


@pytest.mark.parametrize("name", sorted(TABLE))
async def test_each_code_maps_with_details(client: httpx.AsyncClient, name: str) -> None:
    code = grpc.StatusCode[name].value[0]
    resp = await client.post("/v1/fail", json={"small": code, "name": f"failed with {name}"})
    body = assert_status(resp, TABLE[name], code)
    assert body["message"] == f"failed with {name}"
    assert body["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "TEST_FAILURE",
            "domain": "gwtest",
            "metadata": {"k": "v"},
        },
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "name", "description": "bad"}],
        },
    ]


async def test_unknown_route_is_404(client: httpx.AsyncClient) -> None:
    body = assert_status(await client.get("/v2/nothing"), 404, 5)
    assert "/v2/nothing" in body["message"]
    assert_status(await client.get("/v1/items/a/extra"), 404, 5)
    assert_status(await client.get("/v1/items/"), 404, 5)  # an empty segment binds nothing


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/shelves/s/books/b", json={})
    assert_status(resp, 405, 12)
    assert resp.headers["allow"] == "GET"
    resp = await client.patch("/v1/items/x", json={})
    assert_status(resp, 405, 12)
    assert resp.headers["allow"] == "DELETE, GET, PUT"


async def test_unknown_query_parameters_are_named(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/items/x", params={"nope": "1", "inner.nope": "2", "name": "n"})
    body = assert_status(resp, 400, 3)
    assert "inner.nope, name, nope" in body["message"]  # `name` is bound by the path


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"small": "abc"}, "small"),
        ({"small": "99999999999"}, "small"),
        ({"flag": "maybe"}, "not a boolean"),
        ({"color": "COLOR_PURPLE"}, "COLOR_PURPLE"),
        ({"when": "yesterday"}, "when"),
        ({"wait": "5 minutes"}, "wait"),
        ({"inner": "x"}, "set its fields with dotted names"),
        ({"items": "x"}, "items"),
        ({"data": "abcde"}, "data"),
    ],
)
async def test_bad_query_values(
    client: httpx.AsyncClient, params: dict[str, str], fragment: str
) -> None:
    body = assert_status(await client.get("/v1/items/x", params=params), 400, 3)
    assert fragment in body["message"]


async def test_repeated_key_for_a_singular_field(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/items/x", params=[("small", "1"), ("small", "2")])
    body = assert_status(resp, 400, 3)
    assert "one value" in body["message"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{", "malformed JSON"),
        (b'{"name": "a",}', "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b'{"nope": 1}', "nope"),
        (b'{"small": "x"}', "small"),
        (b'{"small": 1.5}', "small"),
        (b'{"big": "12x"}', "big"),
        (b'{"color": "COLOR_PURPLE"}', "COLOR_PURPLE"),
        (b'{"tags": "notalist"}', "tags"),
        (b'{"inner": 5}', "inner"),
        (b'{"name": "a", "name": "b"}', "duplicate"),
        (b"\xff\xfe", "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
        (b'{"attrs": ' + b'{"a":' * 200 + b"1" + b"}" * 201, "attrs"),
        # Python's json reads these; JSON has no such numbers, nor has a Struct.
        (b'{"attrs": {"a": NaN}}', "NaN is not a JSON number"),
        (b'{"attrs": {"a": -Infinity}}', "-Infinity is not a JSON number"),
        (b'{"attrs": {"a": 1e999}}', "1e999 is out of the range of a JSON number"),
        (b'{"attrs": {"a": 1' + b"0" * 400 + b"}}", "is out of the range of a JSON number"),
    ],
)
async def test_bad_json_bodies(client: httpx.AsyncClient, content: bytes, fragment: str) -> None:
    resp = await client.post(
        "/v1/items", content=content, headers={"content-type": "application/json"}
    )
    body = assert_status(resp, 400, 3)
    assert fragment in body["message"]


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
    ],
)
async def test_wrong_content_type_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    resp = await client.post("/v1/items", content=b"{}", headers={"content-type": content_type})
    body = assert_status(resp, 415, 3)
    assert "application/json" in body["message"] or "utf-8" in body["message"]


async def test_huge_body_is_413(upstream: Upstream, api: CompiledApi) -> None:
    async with gateway_client(upstream.address, api, max_body_bytes=1024) as client:
        big = b'{"name": "' + b"x" * 2048 + b'"}'
        body = assert_status(await client.post("/v1/items", content=big), 413, 8)
        assert "1024" in body["message"]

        async def chunks() -> AsyncIterator[
            bytes
        ]:  # no Content-Length: the limit applies while reading
            for _ in range(8):
                yield b"x" * 512

        assert_status(await client.post("/v1/items", content=chunks()), 413, 8)
        ok = await client.post("/v1/items", json={"name": "small"})
        assert ok.status_code == 200


async def test_client_streaming_is_501(client: httpx.AsyncClient) -> None:
    body = assert_status(await client.post("/v1/upload", json={}), 501, 12)
    assert "client streaming" in body["message"]


async def test_invalid_percent_encoding_in_path(client: httpx.AsyncClient) -> None:
    body = assert_status(await client.get("/v1/items/%FF%FE"), 400, 3)
    assert "UTF-8" in body["message"]


async def test_upstream_down_is_503(api: CompiledApi) -> None:
    async with gateway_client("127.0.0.1:1", api) as client:
        assert_status(await client.get("/v1/items/x"), 503, 14)
