"""The route table: every google.api.http binding of every service in a descriptor set.

A `Schema` holds the descriptor pool built from a FileDescriptorSet (with imports) and
the message classes made from it; `Schema.routes()` turns each HttpRule, and each of
its additional_bindings, into a `Route`; a `RouteTable` finds the route of a request.

>>> from llama_mesh_gateway.routes import RouteTable, Schema
>>> schema = Schema.load()  # the llama_mesh.v1 descriptor set
>>> table = RouteTable(schema.routes())
>>> table.find("POST", "/v1/sessions/s1/tasks/t1:cancel").route.method.name
'CancelTask'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2  # type: ignore[import-untyped,unused-ignore]
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped,unused-ignore]

from llama_mesh_gateway.json_shape import ShapeError, Shaper
from llama_mesh_gateway.options import MethodStyle, Options, Style
from llama_mesh_gateway.path_template import PathTemplate, TemplateError

_EXTRA_FILES = (error_details_pb2.DESCRIPTOR, status_pb2.DESCRIPTOR)


def default_descriptor_set_path() -> Path:
    """Where the llama_mesh.v1 descriptor set is (committed next to the generated code)."""
    import llama_mesh.v1

    return Path(llama_mesh.v1.__file__).parent / "llama_mesh.binpb"


class Schema:
    """A descriptor pool built from one FileDescriptorSet, and its message classes."""

    def __init__(self, file_set: descriptor_pb2.FileDescriptorSet) -> None:
        self.file_set = file_set
        self.pool = descriptor_pool.DescriptorPool()
        added: set[str] = set()
        for f in file_set.file:
            self.pool.Add(f)
            added.add(f.name)
        # google.rpc.Status details are Any; make the common detail types resolvable.
        for fd in _EXTRA_FILES:
            self._add_with_deps(fd, added)
        self.options = Options(self.pool)
        self._synthetic = frozenset(_synthetic_oneofs(file_set))
        self._shapers: dict[Style, Shaper] = {}

    def _add_with_deps(self, fd: Any, added: set[str]) -> None:
        if fd.name in added:
            return
        for dep in fd.dependencies:
            self._add_with_deps(dep, added)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        self.pool.Add(proto)
        added.add(fd.name)

    @classmethod
    def load(cls, source: bytes | Path | str | None = None) -> Schema:
        """Load a serialized FileDescriptorSet (bytes or a path; default llama_mesh.v1)."""
        if source is None:
            source = default_descriptor_set_path()
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        file_set = descriptor_pb2.FileDescriptorSet()
        file_set.ParseFromString(data)
        return cls(file_set)

    def shaper(self, style: Style) -> Shaper:
        """The JSON shaper of a style (one per style)."""
        shaper = self._shapers.get(style)
        if shaper is None:
            shaper = Shaper(self.pool, self.options, style, self._synthetic)
            self._shapers[style] = shaper
        return shaper

    def message_class(self, desc: Descriptor) -> type[message.Message]:
        """The message class of a descriptor of this pool (protobuf caches it)."""
        return message_factory.GetMessageClass(desc)

    def routes(self, services: Sequence[str] | None = None) -> list[Route]:
        """Routes of every annotated method (of the named services only, if given).

        A server-streaming method with a `stream_field` is folded into the unary route
        with the same binding (`Route.stream_twin`). Raises TemplateError for rules or
        options that cannot be served.
        """
        out: list[Route] = []
        for f in self.file_set.file:
            for s in f.service:
                full = f"{f.package}.{s.name}" if f.package else s.name
                if services is not None and full not in services and s.name not in services:
                    continue
                sdesc = self.pool.FindServiceByName(full)
                style = self.options.service_style(sdesc)
                for m in s.method:
                    if not m.options.HasExtension(annotations_pb2.http):
                        continue
                    rule = m.options.Extensions[annotations_pb2.http]
                    mdesc = sdesc.methods_by_name[m.name]
                    method_style = self.options.method_style(mdesc)
                    for binding in (rule, *rule.additional_bindings):
                        out.append(self._route(mdesc, binding, style, method_style))
        return _pair_stream_twins(out)

    def _route(
        self,
        method: MethodDescriptor,
        rule: http_pb2.HttpRule,
        style: Style,
        method_style: MethodStyle,
    ) -> Route:
        kind = rule.WhichOneof("pattern")
        if kind is None:
            raise TemplateError(f"{method.full_name}: HttpRule without a pattern")
        if kind == "custom":
            verb, path = rule.custom.kind.upper(), rule.custom.path
        else:
            verb, path = kind.upper(), str(getattr(rule, kind))
        template = PathTemplate.parse(path)
        req = method.input_type
        for var in template.variables:
            leaf = resolve_field_path(req, var.field_path.split("."))
            if leaf is None:
                raise TemplateError(f"{method.full_name}: no field {var.field_path!r}")
        if rule.body not in ("", "*") and rule.body not in req.fields_by_name:
            raise TemplateError(f"{method.full_name}: no body field {rule.body!r}")
        resp = method.output_type
        if rule.response_body and rule.response_body not in resp.fields_by_name:
            raise TemplateError(f"{method.full_name}: no response field {rule.response_body!r}")
        shaper = self.shaper(style)
        try:
            shaper.needs(req)
            shaper.needs(resp)
        except ShapeError as e:
            raise TemplateError(f"{method.full_name}: {e}") from None
        return Route(
            http_method=verb,
            template=template,
            method=method,
            body=rule.body,
            response_body=rule.response_body,
            server_streaming=method.server_streaming,
            client_streaming=method.client_streaming,
            request_class=self.message_class(req),
            response_class=self.message_class(resp),
            style=style,
            method_style=method_style,
            shaper=shaper,
        )


def resolve_field_path(desc: Descriptor, names: Sequence[str]) -> FieldDescriptor | None:
    """The field at a dotted path of proto names (message fields in between), or None."""
    leaf: FieldDescriptor | None = None
    current: Descriptor | None = desc
    for name in names:
        if current is None:
            return None
        leaf = current.fields_by_name.get(name)
        if leaf is None:
            return None
        current = leaf.message_type if leaf.type == FieldDescriptor.TYPE_MESSAGE else None
    return leaf


@dataclass(frozen=True)
class Route:
    """One HTTP binding of one RPC."""

    http_method: str
    template: PathTemplate
    method: MethodDescriptor
    body: str
    response_body: str
    server_streaming: bool
    client_streaming: bool
    request_class: type[message.Message] = field(repr=False)
    response_class: type[message.Message] = field(repr=False)
    style: Style = field(default=Style(), repr=False)
    method_style: MethodStyle = field(default=MethodStyle(), repr=False)
    shaper: Shaper | None = field(default=None, repr=False, compare=False)
    #: The server-streaming method chosen when the request's `stream_field` is true.
    stream_twin: Route | None = field(default=None, repr=False, compare=False)

    @cached_property
    def grpc_path(self) -> str:
        """The gRPC method path, `/package.Service/Method`."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @cached_property
    def bound_paths(self) -> frozenset[tuple[str, ...]]:
        """The field paths the path template binds, as tuples of proto names."""
        return frozenset(tuple(v.field_path.split(".")) for v in self.template.variables)


def _synthetic_oneofs(file_set: descriptor_pb2.FileDescriptorSet) -> Iterable[str]:
    """Full names of the oneofs protoc made for proto3 `optional` fields."""

    def walk(prefix: str, m: descriptor_pb2.DescriptorProto) -> Iterable[str]:
        full = f"{prefix}.{m.name}" if prefix else m.name
        for f in m.field:
            if f.proto3_optional:
                yield f"{full}.{m.oneof_decl[f.oneof_index].name}"
        for nested in m.nested_type:
            yield from walk(full, nested)

    for f in file_set.file:
        for m in f.message_type:
            yield from walk(f.package, m)


def _pair_stream_twins(routes: list[Route]) -> list[Route]:
    """Fold each `stream_field` streaming route into its unary twin; refuse other clashes."""
    by_binding: dict[tuple[str, str], list[Route]] = {}
    for route in routes:
        by_binding.setdefault((route.http_method, route.template.source), []).append(route)
    out: list[Route] = []
    for (verb, path), group in by_binding.items():
        if len(group) == 1:
            route = group[0]
            if route.method_style.stream_field:
                raise TemplateError(
                    f"{route.method.full_name}: stream_field is set but no unary method of "
                    f"{route.method.containing_service.full_name} is bound to {verb} {path}"
                )
            out.append(route)
            continue
        names = ", ".join(r.method.full_name for r in group)
        streams = [r for r in group if r.server_streaming]
        unary = [r for r in group if not r.server_streaming and not r.client_streaming]
        if len(group) != 2 or len(streams) != 1 or len(unary) != 1:
            raise TemplateError(f"{names} are all bound to {verb} {path}")
        stream, single = streams[0], unary[0]
        field_name = stream.method_style.stream_field
        if not field_name:
            raise TemplateError(
                f"{names} are both bound to {verb} {path}: set stream_field on "
                f"{stream.method.full_name} to choose between them"
            )
        if stream.method.input_type is not single.method.input_type:
            raise TemplateError(f"{names} share {verb} {path} but not their request message")
        flag = stream.method.input_type.fields_by_name.get(field_name)
        if flag is None or flag.type != FieldDescriptor.TYPE_BOOL or flag.is_repeated:
            raise TemplateError(
                f"{stream.method.full_name}: stream_field {field_name!r} is not a bool field "
                f"of {stream.method.input_type.full_name}"
            )
        if stream.method.containing_service is not single.method.containing_service:
            raise TemplateError(f"{names} share {verb} {path} across services")
        out.append(replace(single, stream_twin=stream))
    return out


@dataclass(frozen=True)
class Match:
    """A route and the variables its template bound."""

    route: Route
    bindings: dict[str, str]


class MethodNotAllowed(Exception):
    """The path is known but not with this HTTP method."""

    def __init__(self, allowed: Sequence[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = list(allowed)


class RouteTable:
    """Finds the route of a request: verb templates first, then the most literals."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = list(routes)

    def find(self, http_method: str, raw_path: str) -> Match | None:
        """The best match, None if no template matches (404).

        Raises MethodNotAllowed if templates match but none with this method, and
        UnicodeDecodeError if a bound variable is not UTF-8 once percent-decoded.
        """
        matches: list[Match] = []
        for route in self.routes:
            bound = route.template.match(raw_path)
            if bound is not None:
                matches.append(Match(route, bound))
        if any(m.route.template.verb is not None for m in matches):
            matches = [m for m in matches if m.route.template.verb is not None]
        if not matches:
            return None
        same = [m for m in matches if m.route.http_method == http_method]
        if not same:
            raise MethodNotAllowed(sorted({m.route.http_method for m in matches}))
        same.sort(key=lambda m: (-m.route.template.literal_count, len(m.route.template.segments)))
        return same[0]
