"""The http options (llama_mesh/v1/http_options.proto), byte by byte over real HTTP.

test_compat_clients.py shows the official clients parse what these rules produce;
this file pins the rules themselves: stream selection, SSE framing, JSON shape, error
bodies, the checks made when routes are built, and the OpenAPI document.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from grpc_tools import protoc

from llama_mesh_gateway.openapi import build_openapi
from llama_mesh_gateway.path_template import TemplateError
from llama_mesh_gateway.routes import Schema

from .conftest import ROOT, CompiledApi, assert_status

TURN = "/v1/agents/a1/session/s1/turn"
RESPONSES = "/v1/openai/v1/responses"
MESSAGES = [{"role": "user", "content": "hello mesh"}]


def sse_blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in text.split("\n\n") if block.strip()]


# -- stream selection ----------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"stream": False}])
async def test_without_stream_the_unary_method_answers(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    resp = await client.post(TURN, json={"messages": MESSAGES, **body})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["output_message"]["content"] == "ECHO: hello mesh"


async def test_stream_true_selects_the_streaming_method(client: httpx.AsyncClient) -> None:
    resp = await client.post(TURN, json={"messages": MESSAGES, "stream": True})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    blocks = sse_blocks(resp.text)
    # data-only frames of compact JSON: no id (no `sequence`), no event line, no [DONE]
    assert all(len(b) == 1 and b[0].startswith("data: {") for b in blocks), resp.text
    assert ": " not in blocks[0][0].removeprefix("data: ")  # compact separators
    kinds = [json.loads(b[0][6:])["event"]["payload"]["event_type"] for b in blocks]
    assert kinds == ["step_start"] + ["step_progress"] * 4 + ["step_complete", "turn_complete"]


async def test_with_body_star_stream_comes_from_the_body_only(client: httpx.AsyncClient) -> None:
    resp = await client.post(RESPONSES, params={"stream": "true"}, json={"model": "m"})
    assert resp.status_code == 400  # body "*" leaves nothing to the query
    assert "stream" in resp.json()["error"]["message"]


# -- SSE framing -------------------------------------------------------------------


async def test_event_key_names_each_event(client: httpx.AsyncClient) -> None:
    resp = await client.post(RESPONSES, json={"model": "m", "input": "hi", "stream": True})
    blocks = sse_blocks(resp.text)
    for event, data in blocks:
        assert event == "event: " + json.loads(data.removeprefix("data: "))["type"]
    assert blocks[0][0] == "event: response.created"
    assert blocks[-1][0] == "event: response.completed"


async def test_omit_ids_and_done_sentinel(client: httpx.AsyncClient) -> None:
    plain = await client.get("/v1/streams/s:watch", params={"count": 2})
    assert sse_blocks(plain.text)[0][0] == "id: 1"  # the default framing is unchanged
    resp = await client.get("/v1/streams/s:watchDone", params={"count": 2})
    assert resp.text == (
        'data: {"event":{"sequence":"1","text":"event 1"}}\n\n'
        'data: {"event":{"sequence":"2","text":"event 2"}}\n\n'
        "data: [DONE]\n\n"
    )


async def test_no_done_sentinel_after_an_error(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/streams/s:watchDone", params={"count": 1, "failCode": 10})
    last = sse_blocks(resp.text)[-1]
    assert last[0] == "event: error"
    assert "[DONE]" not in resp.text


# -- error formats -----------------------------------------------------------------


async def test_detail_errors(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/agents/missing/session/s1/turn", json={"messages": MESSAGES})
    assert resp.status_code == 404
    assert resp.json() == {"detail": "agent missing not found"}
    assert resp.headers["x-should-retry"] == "false"
    # the gateway's own errors on the service's routes take its format too
    bad = await client.post(TURN, json={"messages": "not a list"})
    assert bad.status_code == 400
    assert set(bad.json()) == {"detail"} and "messages" in bad.json()["detail"]


async def test_detail_error_inside_a_stream(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/agents/fails-midway/session/s1/turn", json={"messages": MESSAGES, "stream": True}
    )
    assert resp.status_code == 200
    assert resp.text.endswith('\n\ndata: {"error":{"message":"model \'nope\' not found"}}\n\n')


async def test_openai_errors(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/openai/v1/responses/missing")
    assert resp.status_code == 404
    assert resp.json() == {
        "error": {
            "message": "response missing not found",
            "type": "invalid_request_error",
            "param": None,
            "code": "response_not_found",
        }
    }
    resp = await client.post(RESPONSES, json={"model": "invalid", "input": "x", "stream": True})
    assert resp.status_code == 400  # before the first event: a plain error response
    assert resp.json()["error"]["param"] == "model"


async def test_openai_error_inside_a_stream(client: httpx.AsyncClient) -> None:
    resp = await client.post(RESPONSES, json={"model": "fails-midway", "stream": True})
    last = sse_blocks(resp.text)[-1]
    assert last == [
        'data: {"error":{"message":"model \'fails-midway\' broke",'
        '"type":"invalid_request_error","param":null,"code":"invalid_argument"}}'
    ]


async def test_default_errors_are_unchanged(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/items/x", params={"nope": 1})
    body = assert_status(resp, 400, 3)
    assert resp.headers["x-should-retry"] == "false"
    assert set(body) == {"code", "message", "details"}
    resp = await client.post("/v1/fail", json={"small": 14, "name": "later"})
    assert_status(resp, 503, 14)
    assert resp.headers["x-should-retry"] == "true"


# -- JSON shape --------------------------------------------------------------------


async def test_json_shape_of_a_response(client: httpx.AsyncClient) -> None:
    resp = await client.post(RESPONSES, json={"model": "m", "input": "hi"})
    body = resp.json()
    assert list(body) == [  # proto names, in declaration order
        "id",
        "object",
        "created_at",
        "model",
        "status",
        "output",
        "parallel_tool_calls",
        "previous_response_id",
        "temperature",
        "error",
        "tool_choice",
        "tools",
    ]
    assert body["created_at"] == 1796036340  # int64 as a number
    assert body["previous_response_id"] is None and body["temperature"] is None  # optional
    assert body["error"] is None  # an unset message field
    assert body["tools"] == []
    assert body["output"] == [
        {
            "type": "message",  # the discriminator, then the member's fields inline
            "id": "msg_1",
            "role": "assistant",  # ROLE_ASSISTANT, short
            "status": "completed",
            "content": [{"type": "output_text", "text": "ECHO: hi", "annotations": []}],
        }
    ]


def test_requests_read_the_same_shape(api: CompiledApi) -> None:
    schema = Schema.load(api.descriptor_set)
    [route] = [r for r in schema.routes() if r.method.name == "CreateTurn"]
    assert route.shaper is not None
    step_type = schema.pool.FindMessageTypeByName("gwtest.v1.Step")
    written = {
        "turn_id": "t1",
        "step_id": "s1",
        "started_at": None,
        "completed_at": None,
        "step_type": "inference",
        "model_response": {
            "role": "assistant",
            "content": "hi",
            "stop_reason": "end_of_message",
            "tool_calls": [],
        },
    }
    step: Any = schema.message_class(step_type)()  # a message class built at run time
    json_format.ParseDict(route.shaper.request_doc(step_type, written), step)
    assert step.WhichOneof("details") == "inference"
    assert step.inference.model_response.stop_reason == 2  # STOP_REASON_END_OF_MESSAGE
    assert route.shaper.to_json(step) == written  # and back, byte for byte
    with pytest.raises(Exception, match="step_type 'nope' is not one of 'inference'"):
        route.shaper.request_doc(step_type, {**written, "step_type": "nope"})


def test_null_for_a_repeated_field_is_none(api: CompiledApi) -> None:
    """llama-stack-client's Agent helper sends `"documents": null, "toolgroups": null`."""
    schema = Schema.load(api.descriptor_set)
    [route] = [r for r in schema.routes() if r.method.name == "CreateTurn"]
    assert route.shaper is not None
    request_type = schema.pool.FindMessageTypeByName("gwtest.v1.CreateTurnRequest")
    written: dict[str, Any] = {"messages": [], "documents": None, "toolgroups": None}
    written["stream"] = True
    request: Any = schema.message_class(request_type)()  # a message class built at run time
    json_format.ParseDict(route.shaper.request_doc(request_type, written), request)
    assert list(request.documents) == [] and list(request.toolgroups) == []
    assert request.stream


# -- checks when the routes are built ---------------------------------------------


def compile_schema(tmp_path: Path, text: str) -> Schema:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "t.proto").write_text(text)
    wkt = str(importlib.resources.files("grpc_tools") / "_proto")
    out = tmp_path / "t.binpb"
    args = ["protoc", f"-I{tmp_path}", f"-I{ROOT / 'proto'}", f"-I{wkt}"]
    args += ["--include_imports", f"--descriptor_set_out={out}", "t/t.proto"]
    assert protoc.main(args) == 0
    return Schema.load(out)


HEADER = """
syntax = "proto3";
package t;
import "google/api/annotations.proto";
import "llama_mesh/v1/http_options.proto";
message Req { bool stream = 1; string name = 2; }
message A { string x = 1; }
message B { string y = 1; }
"""


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            """service S {
              rpc One(Req) returns (Req) { option (google.api.http) = {get: "/v1/x"}; }
              rpc Two(Req) returns (Req) { option (google.api.http) = {get: "/v1/x"}; }
            }""",
            "are all bound to GET /v1/x",
        ),
        (
            """service S {
              rpc One(Req) returns (Req) { option (google.api.http) = {get: "/v1/x"}; }
              rpc Two(Req) returns (stream Req) { option (google.api.http) = {get: "/v1/x"}; }
            }""",
            "set stream_field",
        ),
        (
            """service S {
              rpc One(Req) returns (Req) { option (google.api.http) = {get: "/v1/x"}; }
              rpc Two(Req) returns (stream Req) {
                option (google.api.http) = {get: "/v1/x"};
                option (llama_mesh.v1.http_method_style) = {stream_field: "name"};
              }
            }""",
            "is not a bool field",
        ),
        (
            """service S {
              rpc Two(Req) returns (stream Req) {
                option (google.api.http) = {get: "/v1/x"};
                option (llama_mesh.v1.http_method_style) = {stream_field: "stream"};
              }
            }""",
            "no unary method",
        ),
        (
            """message U { string x = 1;
                 oneof u { option (llama_mesh.v1.json_discriminator) = "k"; A a = 2; } }
            service S { rpc One(U) returns (U) { option (google.api.http) = {get: "/v1/x"}; } }""",
            "clash with the containing message",
        ),
        (
            """message U { oneof u { option (llama_mesh.v1.json_discriminator) = "k";
                 A a = 1; B b = 2 [(llama_mesh.v1.json_tag) = "a"]; } }
            service S { rpc One(U) returns (U) { option (google.api.http) = {get: "/v1/x"}; } }""",
            "json_tag 'a' is used twice",
        ),
        (
            """message U { oneof u { option (llama_mesh.v1.json_discriminator) = "k";
                 string a = 1; } }
            service S { rpc One(U) returns (U) { option (google.api.http) = {get: "/v1/x"}; } }""",
            "must be a message",
        ),
    ],
)
def test_options_that_cannot_apply_fail_at_load(tmp_path: Path, body: str, fragment: str) -> None:
    schema = compile_schema(tmp_path, HEADER + body)
    with pytest.raises(TemplateError, match=fragment):
        schema.routes()


# -- OpenAPI -------------------------------------------------------------------------


def test_openapi_documents_the_options(api: CompiledApi) -> None:
    schema = Schema.load(api.descriptor_set)
    doc = build_openapi(schema, schema.routes())
    turn = doc["paths"]["/v1/agents/{agent_id}/session/{session_id}/turn"]["post"]
    assert turn["operationId"] == "TurnService_CreateTurn"
    ok = turn["responses"]["200"]
    assert set(ok["content"]) == {"application/json", "text/event-stream", "application/x-ndjson"}
    assert ok["description"].startswith("`stream` false or absent: one gwtest.v1.Turn")
    error = turn["responses"]["default"]["content"]["application/json"]["schema"]
    assert error["properties"] == {"detail": {"type": "string"}}
    schemas = doc["components"]["schemas"]
    assert "gwtest.v1.TurnStreamChunk" in schemas  # each event's data
    step = schemas["gwtest.v1.Step"]
    assert step["discriminator"] == {"propertyName": "step_type"}
    inference = step["anyOf"][0]["properties"]
    assert inference["step_type"] == {"type": "string", "enum": ["inference"]}
    assert {"turn_id", "started_at", "model_response"} <= set(inference)
    assert schemas["gwtest.v1.Role"]["enum"] == [None, "user", "assistant"]
    response = schemas["gwtest.v1.ResponseObject"]["properties"]
    assert response["created_at"] == {
        "type": "integer",
        "format": "int64",
        "description": "Unix seconds.",
    }
    assert response["previous_response_id"]["nullable"] is True
    events = doc["paths"]["/v1/openai/v1/responses"]["post"]["responses"]["200"]["content"]
    assert "event" in events["text/event-stream"]["schema"]["properties"]
    oai_error = doc["paths"]["/v1/openai/v1/responses/{response_id}"]["get"]["responses"]
    assert "error" in oai_error["default"]["content"]["application/json"]["schema"]["properties"]
