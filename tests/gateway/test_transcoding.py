"""Every HttpRule binding of the test API round-trips through real HTTP and gRPC."""

from __future__ import annotations

import base64

import httpx

from .conftest import assert_status


async def test_single_variable_and_query_parameters(client: httpx.AsyncClient) -> None:
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("big", "9007199254740993"),  # > 2**53: only exact as a string
        ("ubig", "18446744073709551615"),
        ("small", "-7"),
        ("ratio", "0.25"),
        ("flag", "true"),
        ("data", base64.urlsafe_b64encode(b"\xfb\xff").decode()),
        ("color", "COLOR_RED"),
        ("tags", "a"),
        ("tags", "b c"),
        ("colors", "COLOR_BLUE"),
        ("colors", "1"),  # enums by number too
        ("numbers", "1"),
        ("numbers", "-2"),
        ("inner.name", "in"),  # dotted path, proto names...
        ("inner.count", "3"),
        ("when", "2024-05-06T07:08:09.5Z"),  # well-known types from strings
        ("wait", "1.5s"),
        ("mask", "name,inner.count"),
        ("optBig", "42"),  # ...and JSON names
        ("opt_flag", "false"),
        ("optText", ""),
    ]
    resp = await client.get("/v1/items/it%20em", params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["method"] == "GetItem"
    assert body["name"] == "it em"
    assert body["big"] == "9007199254740993"
    assert body["ubig"] == "18446744073709551615"
    assert body["small"] == -7
    assert body["ratio"] == 0.25
    assert body["flag"] is True
    assert base64.b64decode(body["data"]) == b"\xfb\xff"
    assert body["color"] == "COLOR_RED"
    assert body["tags"] == ["a", "b c"]
    assert body["colors"] == ["COLOR_BLUE", "COLOR_RED"]
    assert body["numbers"] == ["1", "-2"]
    assert body["inner"] == {"name": "in", "count": "3", "color": "COLOR_UNSPECIFIED"}
    assert body["when"] == "2024-05-06T07:08:09.500Z"
    assert body["wait"] == "1.500s"
    assert body["mask"] == "name,inner.count"
    assert body["optBig"] == "42"
    assert body["optFlag"] is False
    assert body["optText"] == ""
    # Fields left unset are still shown with their defaults (proto3 JSON, defaults on).
    assert body["id"] == "" and body["labels"] == {} and body["items"] == []


async def test_additional_binding(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/alt/x-1/items", params={"name": "n"})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["method"], resp.json()["id"], resp.json()["name"]) == (
        "GetItem",
        "x-1",
        "n",
    )


async def test_multi_segment_variable(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/shelves/s1/books/b%C3%A9")
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "shelves/s1/books/bé"
    assert resp.json()["method"] == "GetBook"


async def test_encoded_slash_stays_encoded_in_multi_segment_variable(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get("/v1/shelves/a%2Fb/books/c%2fd")
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "shelves/a%2Fb/books/c%2Fd"


async def test_encoded_slash_decodes_in_single_segment_variable(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/items/a%2Fb")
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "a/b"


async def test_double_wildcard_variable(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/files/a/b/c%2Fd.txt")
    assert resp.status_code == 200, resp.text
    assert resp.json()["path"] == "a/b/c%2Fd.txt"
    resp = await client.get("/v1/files/one")
    assert resp.json()["path"] == "one"


async def test_unbound_wildcards(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/wild/any/x/deep/er", params={"name": "w"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["method"] == "Wild"
    assert (await client.get("/v1/wild/any/y/deep")).status_code == 404


async def test_body_star(client: httpx.AsyncClient) -> None:
    sent = {
        "name": "n",
        "big": 12,  # int64 as a number is accepted too
        "color": 2,  # enum by number
        "data": base64.b64encode(b"hi").decode(),
        "attrs": {"a": [1, "x", None, {"b": True}]},
        "anyValue": None,
        "labels": {"k": "v"},
        "items": [{"name": "i1", "count": "5"}],
        "when": "2024-01-01T00:00:00Z",
        "wait": "-0.5s",
        "optBig": "-3",
    }
    resp = await client.post("/v1/items", json=sent)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["method"] == "CreateItem"
    assert body["big"] == "12"
    assert body["color"] == "COLOR_BLUE"
    assert body["data"] == "aGk="
    assert body["attrs"] == {"a": [1, "x", None, {"b": True}]}
    assert body["anyValue"] is None
    assert body["labels"] == {"k": "v"}
    assert body["items"] == [{"name": "i1", "count": "5", "color": "COLOR_UNSPECIFIED"}]
    assert body["when"] == "2024-01-01T00:00:00Z"
    assert body["wait"] == "-0.500s"
    assert body["optBig"] == "-3"


async def test_body_star_rejects_query_parameters(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/items", params={"name": "n"}, json={})
    body = assert_status(resp, 400, 3)
    assert "name" in body["message"]


async def test_body_field_and_response_body(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/shelves/s1/inners", params={"small": "4"}, json={"name": "in", "count": 9}
    )
    assert resp.status_code == 200, resp.text
    # response_body: "inner" gives the inner message only.
    assert resp.json() == {"name": "in", "count": "9", "color": "COLOR_UNSPECIFIED"}


async def test_nested_path_field_with_body_field(client: httpx.AsyncClient) -> None:
    resp = await client.patch("/v1/inners/i9", json={"count": "2", "color": "COLOR_RED"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["method"] == "UpdateInner"
    # The path variable wins over (and fills in) the body field.
    assert body["inner"] == {"name": "inners/i9", "count": "2", "color": "COLOR_RED"}


async def test_put_and_delete(client: httpx.AsyncClient) -> None:
    resp = await client.put("/v1/items/p", json={"name": "ignored", "flag": True})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["method"], resp.json()["name"], resp.json()["flag"]) == (
        "ReplaceItem",
        "p",
        True,
    )
    resp = await client.delete("/v1/items/p")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {}


async def test_custom_verb_is_matched_apart_from_the_variable(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/things/t1:cancel", json={"id": "why"})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["method"], resp.json()["name"]) == ("CancelThing", "things/t1")
    resp = await client.get("/v1/things/t1")
    assert (resp.json()["method"], resp.json()["name"]) == ("GetThing", "things/t1")
    # An encoded colon is part of the id, not a verb.
    resp = await client.get("/v1/things/t1%3Acancel")
    assert (resp.json()["method"], resp.json()["name"]) == ("GetThing", "things/t1:cancel")
    # The verb route owns the path: GET on it is 405, an unknown verb 404.
    resp = await client.get("/v1/things/t1:cancel")
    assert_status(resp, 405, 12)
    assert resp.headers["allow"] == "POST"


async def test_custom_http_method(client: httpx.AsyncClient) -> None:
    resp = await client.request("PURGE", "/v1/items/old:purge")
    assert resp.status_code == 200, resp.text
    assert (resp.json()["method"], resp.json()["name"]) == ("PurgeItem", "old")


async def test_unicode_ids(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/items/日本語 ✓")
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "日本語 ✓"
    resp = await client.get("/v1/items/x", params={"tags": "ünï"})
    assert resp.json()["tags"] == ["ünï"]


async def test_empty_body_is_an_empty_message(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/items", content=b"")
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == ""
    resp = await client.post("/v1/shelves/s/inners", content=b"  ")
    assert resp.status_code == 200, resp.text


async def test_curl_form_content_type_is_read_as_json(client: httpx.AsyncClient) -> None:
    # `curl -d '{...}'` sends application/x-www-form-urlencoded.
    resp = await client.post(
        "/v1/items",
        content=b'{"name": "curl"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == "curl"


async def test_a_structs_keys_come_back_sorted(client: httpx.AsyncClient) -> None:
    # A Struct is a protobuf map, iterated in an order seeded per process: without
    # sorting, the same message prints its keys in another order in another gateway.
    keys = [f"k{n:02d}" for n in range(24, 0, -1)]
    attrs = {k: {"z": 1, "a": [{"y": 2, "b": 3}]} for k in keys}
    resp = await client.post("/v1/items", json={"name": "n", "attrs": attrs})
    assert resp.status_code == 200, resp.text
    body = resp.json()  # a dict keeps the order the gateway wrote
    assert list(body["attrs"]) == sorted(keys)
    for value in body["attrs"].values():
        assert list(value) == ["a", "z"]
        assert list(value["a"][0]) == ["b", "y"]
