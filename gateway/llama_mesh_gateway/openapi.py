"""An OpenAPI 3 document generated from the descriptor set and its HttpRules.

Paths come from the route table (one operation per binding); each `*` of a path
variable becomes its own path parameter named after the literal before it, so
`/v1/{name=sessions/*/tasks/*}` is documented as `/v1/sessions/{session}/tasks/{task}`.
Schemas come from the messages (JSON names, proto3 JSON types: int64 as strings, enums
by name, well-known types in their JSON form); the proto comments become descriptions,
`google.api.field_behavior` becomes `required` / `readOnly`. Query parameters are the
request fields outside the path and body, by dotted JSON name. Errors are documented as
the `default` response, a google.rpc.Status.

A service's http options (llama_mesh/v1/http_options.proto) are documented as they are
served: proto field names, `nullable` for fields written as null, int64 as integers,
enum values by their JSON names, a `json_discriminator` oneof as `anyOf` variants with
a `discriminator`, the error body of the service's format, and a stream-selected route
as one operation whose 200 is both `application/json` and `text/event-stream`.

>>> from llama_mesh_gateway.routes import Schema
>>> schema = Schema.load()
>>> doc = build_openapi(schema, schema.routes())
>>> "/v1/sessions/{session}/tasks/{task}:cancel" in doc["paths"]
True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from google.api import field_behavior_pb2  # type: ignore[import-untyped,unused-ignore]
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from llama_mesh_gateway.json_shape import Shaper
from llama_mesh_gateway.openapi_types import INT64_TYPES, SCALARS, WKT
from llama_mesh_gateway.options import ErrorFormat, Style
from llama_mesh_gateway.proto_docs import ProtoDocs
from llama_mesh_gateway.routes import Route, Schema
from llama_mesh_gateway.streaming import NDJSON, SSE
from llama_mesh_gateway.transcode import STRING_WKT

_REF = "#/components/schemas/"
STATUS_SCHEMA = "google.rpc.Status"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
_MAX_QUERY_DEPTH = 3


class _Builder:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.docs = ProtoDocs(schema.file_set.file)
        self.components: dict[str, dict[str, Any]] = {}
        self.shaper: Shaper = schema.shaper(Style())
        # A message documented under two JSON styles gets one component per style.
        self._names: dict[tuple[str, Style], str] = {}

    def ref(self, name: str) -> dict[str, Any]:
        return {"$ref": _REF + name}

    def key(self, fld: FieldDescriptor) -> str:
        """The JSON key of a field under the current style."""
        return fld.name if self.shaper.style.proto_field_names else fld.json_name

    def _component(self, full_name: str) -> tuple[str, bool]:
        """(component name, whether it is new) of a type under the current style."""
        style = self.shaper.style
        name = self._names.get((full_name, style))
        if name is not None:
            return name, False
        name = full_name
        n = 2
        while name in self.components:
            name = f"{full_name}.{n}"
            n += 1
        self._names[(full_name, style)] = name
        return name, True

    def message(self, desc: Descriptor) -> dict[str, Any]:
        """A reference to the component schema of a message (made on first use)."""
        if desc.full_name in WKT:
            return dict(WKT[desc.full_name])
        name, new = self._component(desc.full_name)
        if new:
            self.components[name] = {}  # placeholder: recursion stops here
            self.components[name] = self.object(desc)
        return self.ref(name)

    def object(self, desc: Descriptor, skip: Sequence[str] = ()) -> dict[str, Any]:
        plan = self.shaper.plan(desc)
        props: dict[str, Any] = {}
        required: list[str] = []
        variants: dict[str, dict[str, Any]] = {}
        for fld in desc.fields:
            if fld.name in skip:
                continue
            if fld.name in plan.tags:
                variants[plan.tags[fld.name]] = self.object(cast(Descriptor, fld.message_type))
                continue
            key = self.key(fld)
            props[key] = self.property(desc, fld, nullable=fld.name in plan.nullable)
            behaviors = self.docs.behaviors.get(f"{desc.full_name}.{fld.name}", set())
            if field_behavior_pb2.REQUIRED in behaviors:
                required.append(key)
        out: dict[str, Any] = {"type": "object"}
        comment = self.docs.comments.get(desc.full_name)
        if comment:
            out["description"] = comment
        out["properties"] = props
        if required:
            out["required"] = required
        if not variants:
            return out
        # A json_discriminator oneof: one variant per member, its fields inline.
        disc = plan.discriminator
        any_of = []
        for tag, inner in variants.items():
            variant = {**inner, "properties": {**props, **inner.get("properties", {})}}
            variant["properties"][disc] = {"type": "string", "enum": [tag]}
            variant["required"] = [disc, *required, *inner.get("required", [])]
            variant.pop("description", None)
            any_of.append(variant)
        doc: dict[str, Any] = {"anyOf": any_of, "discriminator": {"propertyName": disc}}
        if comment:
            doc["description"] = comment
        return doc

    def property(self, desc: Descriptor, fld: FieldDescriptor, *, nullable: bool) -> dict[str, Any]:
        prop = self.field(fld)
        behaviors = self.docs.behaviors.get(f"{desc.full_name}.{fld.name}", set())
        if "$ref" in prop:
            return {"allOf": [prop], "nullable": True} if nullable else prop
        text = self.docs.comments.get(f"{desc.full_name}.{fld.name}")
        if text:
            prop["description"] = text
        if field_behavior_pb2.OUTPUT_ONLY in behaviors:
            prop["readOnly"] = True
        if nullable:
            prop["nullable"] = True
        return prop

    def field(self, fld: FieldDescriptor) -> dict[str, Any]:
        if fld.message_type is not None and fld.message_type.GetOptions().map_entry:
            value = fld.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value)}
        if fld.is_repeated:
            return {"type": "array", "items": self.single(fld)}
        return self.single(fld)

    def single(self, fld: FieldDescriptor) -> dict[str, Any]:
        if fld.message_type is not None:
            return self.message(fld.message_type)
        if fld.enum_type is not None:
            return self.enum(fld.enum_type)
        if self.shaper.style.int64_as_number and fld.type in INT64_TYPES:
            return {"type": "integer", "format": "int64"}
        return dict(SCALARS[fld.type])

    def enum(self, desc: EnumDescriptor) -> dict[str, Any]:
        name, new = self._component(desc.full_name)
        if new:
            names = self.shaper.enum(desc).out
            values = [names.get(v.name, v.name) if names else v.name for v in desc.values]
            out: dict[str, Any] = {"type": "string", "enum": values}
            if None in values:
                out["nullable"] = True
            comment = self.docs.comments.get(desc.full_name)
            if comment:
                out["description"] = comment
            self.components[name] = out
        return self.ref(name)

    def query_params(
        self,
        desc: Descriptor,
        excluded: set[tuple[str, ...]],
        path: tuple[str, ...] = (),
        json_path: tuple[str, ...] = (),
        stack: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        """Query parameters for the fields of desc outside `excluded`, by dotted JSON name."""
        params: list[dict[str, Any]] = []
        for fld in desc.fields:
            fpath = (*path, fld.name)
            jpath = (*json_path, self.key(fld))
            if any(fpath[: len(x)] == x for x in excluded):
                continue
            msg = fld.message_type
            repeated = fld.is_repeated
            if msg is not None and (repeated or msg.full_name not in STRING_WKT):
                nested = not repeated and msg.full_name not in STRING_WKT
                if nested and len(fpath) < _MAX_QUERY_DEPTH and msg.full_name not in stack:
                    inner_stack = (*stack, desc.full_name)
                    params.extend(self.query_params(msg, excluded, fpath, jpath, inner_stack))
                continue
            param: dict[str, Any] = {"name": ".".join(jpath), "in": "query"}
            param["schema"] = self.field(fld)
            if repeated:
                param.update(style="form", explode=True)
            text = self.docs.comments.get(f"{desc.full_name}.{fld.name}")
            if text:
                param["description"] = text
            params.append(param)
        return params


def build_openapi(
    schema: Schema,
    routes: Sequence[Route],
    *,
    title: str = "llama-mesh REST gateway",
    version: str = "v1",
) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the routes."""
    b = _Builder(schema)
    paths: dict[str, dict[str, Any]] = {}
    seen_ids: set[str] = set()
    for route in routes:
        verb = route.http_method.lower()
        if verb not in _HTTP_METHODS or route.client_streaming:
            continue  # custom HTTP methods and client streaming have no OpenAPI form
        path, path_params = route.template.openapi_path()
        method = route.method
        b.shaper = route.shaper or schema.shaper(route.style)
        service = method.containing_service
        op_id = f"{service.name}_{method.name}"
        n = 2
        while op_id in seen_ids:
            op_id = f"{service.name}_{method.name}_{n}"
            n += 1
        seen_ids.add(op_id)
        op: dict[str, Any] = {
            "operationId": op_id,
            "summary": method.name,
            "tags": [service.name],
        }
        comment = b.docs.comments.get(f"{service.full_name}.{method.name}")
        if comment:
            op["description"] = comment
        params: list[dict[str, Any]] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
                "description": f"A segment of `{field_path}`." if field_path else "A path segment.",
            }
            for name, (field_path, _) in path_params.items()
        ]
        bound = route.bound_paths
        if route.body != "*":
            excluded = set(bound)
            if route.body:
                excluded.add((route.body,))
            params.extend(b.query_params(method.input_type, excluded))
        if params:
            op["parameters"] = params
        if route.body:
            if route.body == "*":
                top = {p[0] for p in bound if len(p) == 1}
                body_schema = b.object(method.input_type, skip=sorted(top))
            else:
                body_schema = b.field(method.input_type.fields_by_name[route.body])
            op["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": body_schema}},
            }
        if route.response_body:
            ok_schema = b.field(method.output_type.fields_by_name[route.response_body])
        else:
            ok_schema = b.message(method.output_type)
        ok_content: dict[str, Any] = {"application/json": {"schema": ok_schema}}
        ok: dict[str, Any] = {"description": "OK", "content": ok_content}
        stream = route.stream_twin or (route if route.server_streaming else None)
        if stream is not None:
            out_type = stream.method.output_type
            stream_doc = (
                f"A stream of {out_type.full_name}: Server-Sent Events by default, "
                f"NDJSON with `Accept: {NDJSON}`."
            )
            content = {
                SSE: {"schema": _sse_event(out_type.full_name, stream)},
                NDJSON: {"schema": {"type": "string"}},
            }
            b.message(out_type)  # the schema of each event's data
            if route.stream_twin is None:
                ok = {"description": stream_doc, "content": content}
            else:
                flag = route.stream_twin.method_style.stream_field
                ok["description"] = (
                    f"`{flag}` false or absent: one {method.output_type.full_name} "
                    f"(application/json). `{flag}` true: {stream_doc[0].lower()}{stream_doc[1:]}"
                )
                ok_content.update(content)
        op["responses"] = {"200": ok, "default": _error_response(b, route.style.error_format)}
        paths.setdefault(path, {})[verb] = op
    paths["/healthz"] = {
        "get": {
            "operationId": "Gateway_Health",
            "summary": "Health",
            "description": "The gateway is up; `upstreamStatus` is the upstream's "
            "grpc.health.v1 status. 200 when it is SERVING, 503 otherwise.",
            "tags": ["Gateway"],
            "responses": {
                "200": {
                    "description": "Upstream SERVING",
                    "content": {"application/json": {"schema": _HEALTH}},
                },
                "503": {
                    "description": "Upstream not serving",
                    "content": {"application/json": {"schema": _HEALTH}},
                },
            },
        }
    }
    b.components[STATUS_SCHEMA] = {
        "type": "object",
        "description": "The error model: a gRPC status code, a message and typed details.",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
            "message": {"type": "string"},
            "details": {"type": "array", "items": dict(WKT["google.protobuf.Any"])},
        },
        "required": ["code", "message"],
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(b.components.items()))},
    }


def openapi_json(schema: Schema, routes: Sequence[Route]) -> str:
    """The OpenAPI document as JSON text: what /openapi.json serves and `make gen` writes."""
    return json.dumps(build_openapi(schema, routes), indent=2, ensure_ascii=False) + "\n"


_HEALTH: dict[str, Any] = {
    "type": "object",
    "properties": {
        "gateway": {"type": "string"},
        "upstream": {"type": "string"},
        "upstreamStatus": {"type": "string"},
        "message": {"type": "string"},
    },
}


def _error_response(b: _Builder, fmt: ErrorFormat) -> dict[str, Any]:
    """The `default` response of an operation: its service's error format."""
    if fmt is ErrorFormat.DETAIL:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {"detail": {"type": "string"}},
            "required": ["detail"],
        }
        return {
            "description": 'An error: `{"detail": message}`.',
            "content": {"application/json": {"schema": schema}},
        }
    if fmt is ErrorFormat.OPENAI:
        error = {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
            "required": ["message", "type"],
        }
        schema = {"type": "object", "properties": {"error": error}, "required": ["error"]}
        return {
            "description": "An error, as OpenAI's API writes it.",
            "content": {"application/json": {"schema": schema}},
        }
    return {
        "description": "An error: a google.rpc.Status.",
        "content": {"application/json": {"schema": b.ref(STATUS_SCHEMA)}},
    }


def _sse_event(message_name: str, route: Route) -> dict[str, Any]:
    """One Server-Sent Event (OpenAPI 3.0: the schema of text/event-stream is per event)."""
    framing = route.method_style.sse
    status = route.style.error_format is ErrorFormat.GOOGLE_RPC_STATUS
    props: dict[str, Any] = {}
    if not framing.omit_ids:
        props["id"] = {"type": "string", "description": "The item's sequence, when it has one."}
    if framing.event_key:
        props["event"] = {
            "type": "string",
            "description": f"The `{framing.event_key}` of the data; `error` for an error.",
        }
    elif status:
        props["event"] = {"type": "string", "enum": ["message", "error"]}
    error = "a google.rpc.Status for `error`" if status else '`{"error": {...}}` for an error'
    done = "; `[DONE]` after the last" if framing.done_sentinel else ""
    props["data"] = {"type": "string", "description": f"JSON: a {message_name}, or {error}{done}."}
    return {"type": "object", "properties": props, "required": ["data"]}
