"""The options of `llama_mesh/v1/http_options.proto`, read from a descriptor pool.

The gateway imports no generated code: it finds the extensions by name in the pool
built from the descriptor set and reads them from each descriptor's serialized
options. A descriptor set without that file has no options, and every route gets
the defaults (proto3 JSON, google.rpc.Status errors, the default SSE framing).

>>> from llama_mesh_gateway.routes import Schema
>>> schema = Schema.load()
>>> service = schema.pool.FindServiceByName("llama_mesh.v1.ControlPlaneAPI")
>>> schema.options.service_style(service) == Style()  # no options: the defaults
True
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pool, message, message_factory
from google.protobuf.descriptor import (
    EnumValueDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    OneofDescriptor,
    ServiceDescriptor,
)

PACKAGE = "llama_mesh.v1"


class ErrorFormat(enum.StrEnum):
    """The shape of error bodies (`llama_mesh.v1.ErrorFormat`)."""

    GOOGLE_RPC_STATUS = "google_rpc_status"
    DETAIL = "detail"
    OPENAI = "openai"


_ERROR_FORMATS = {
    0: ErrorFormat.GOOGLE_RPC_STATUS,
    1: ErrorFormat.GOOGLE_RPC_STATUS,
    2: ErrorFormat.DETAIL,
    3: ErrorFormat.OPENAI,
}


@dataclass(frozen=True)
class Style:
    """How JSON and errors look on a service's routes (`llama_mesh.v1.HttpStyle`)."""

    proto_field_names: bool = False
    null_for_unset: bool = False
    int64_as_number: bool = False
    short_enum_names: bool = False
    error_format: ErrorFormat = ErrorFormat.GOOGLE_RPC_STATUS
    comma_separated_query_arrays: bool = False

    @property
    def shapes_json(self) -> bool:
        """Whether JSON differs from proto3 canonical JSON under this style."""
        return (
            self.proto_field_names
            or self.null_for_unset
            or self.int64_as_number
            or self.short_enum_names
        )


@dataclass(frozen=True)
class SseFraming:
    """Server-Sent Events framing of one method (`llama_mesh.v1.SseFraming`)."""

    omit_ids: bool = False
    event_key: str = ""
    done_sentinel: bool = False


@dataclass(frozen=True)
class MethodStyle:
    """How one method is served (`llama_mesh.v1.HttpMethodStyle`)."""

    stream_field: str = ""
    sse: SseFraming = SseFraming()


_STYLE_FIELDS = (
    "proto_field_names",
    "null_for_unset",
    "int64_as_number",
    "short_enum_names",
    "comma_separated_query_arrays",
)


class Options:
    """Reads the http_options extensions of the descriptors of one pool."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool
        self._classes: dict[str, type[message.Message]] = {}

    def _extension(self, name: str) -> Any:
        try:
            ext = self._pool.FindExtensionByName(f"{PACKAGE}.{name}")
        except KeyError:
            return None
        return ext

    def _read(self, desc: Any, name: str) -> Any:
        """The value of extension `name` on `desc`'s options, or None when unset."""
        ext = self._extension(name)
        if ext is None:
            return None
        options = desc.GetOptions()
        raw = options.SerializeToString()
        if not raw:
            return None
        holder = ext.containing_type.full_name
        cls = self._classes.get(holder)
        if cls is None:
            cls = message_factory.GetMessageClass(ext.containing_type)
            self._classes[holder] = cls
        parsed = cls.FromString(raw)
        if ext.message_type is not None:
            return parsed.Extensions[ext] if parsed.HasExtension(ext) else None
        value = parsed.Extensions[ext]
        return value or None

    def _style(self, desc: Any, name: str, base: Style) -> Style:
        msg = self._read(desc, name)
        if msg is None:
            return base
        values: dict[str, Any] = {
            f: getattr(msg, f) if msg.HasField(f) else getattr(base, f) for f in _STYLE_FIELDS
        }
        values["error_format"] = (
            _ERROR_FORMATS.get(msg.error_format, ErrorFormat.GOOGLE_RPC_STATUS)
            if msg.HasField("error_format")
            else base.error_format
        )
        return Style(**values)

    def service_style(self, service: ServiceDescriptor) -> Style:
        """The style of a service: its own option over its file's."""
        file_style = self._style(service.file, "http_file_style", Style())
        return self._style(service, "http_service_style", file_style)

    def method_style(self, method: MethodDescriptor) -> MethodStyle:
        """The HttpMethodStyle of a method (defaults when unset)."""
        msg = self._read(method, "http_method_style")
        if msg is None:
            return MethodStyle()
        sse = msg.sse
        return MethodStyle(
            stream_field=msg.stream_field,
            sse=SseFraming(
                omit_ids=sse.omit_ids, event_key=sse.event_key, done_sentinel=sse.done_sentinel
            ),
        )

    def discriminator(self, oneof: OneofDescriptor) -> str:
        """The `json_discriminator` of a oneof, or ''."""
        value = self._read(oneof, "json_discriminator")
        return str(value) if value else ""

    def tag(self, field: FieldDescriptor) -> str:
        """The discriminator value of a oneof member: its `json_tag` or its name."""
        value = self._read(field, "json_tag")
        return str(value) if value else field.name

    def enum_value_name(self, value: EnumValueDescriptor) -> str:
        """The `json_enum_value` of an enum value, or ''."""
        name = self._read(value, "json_enum_value")
        return str(name) if name else ""
