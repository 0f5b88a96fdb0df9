"""The comments and field behaviors of proto files, by full name, for generated docs."""

from __future__ import annotations

from collections.abc import Iterable

from google.api import field_behavior_pb2  # type: ignore[import-untyped,unused-ignore]
from google.protobuf import descriptor_pb2


class ProtoDocs:
    """Comments and field behaviors by full name, read from the file protos."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> None:
        self.comments: dict[str, str] = {}
        self.behaviors: dict[str, set[int]] = {}
        for f in files:
            by_path = {
                tuple(loc.path): loc.leading_comments.strip()
                for loc in f.source_code_info.location
                if loc.leading_comments.strip()
            }
            prefix = f"{f.package}." if f.package else ""
            for i, m in enumerate(f.message_type):
                self._message(m, prefix, (4, i), by_path)
            for i, e in enumerate(f.enum_type):
                self._put(prefix + e.name, (5, i), by_path)
            for i, s in enumerate(f.service):
                self._put(prefix + s.name, (6, i), by_path)
                for j, meth in enumerate(s.method):
                    self._put(f"{prefix}{s.name}.{meth.name}", (6, i, 2, j), by_path)

    def _put(self, name: str, path: tuple[int, ...], by_path: dict[tuple[int, ...], str]) -> None:
        text = by_path.get(path)
        if text:
            self.comments[name] = text

    def _message(
        self,
        m: descriptor_pb2.DescriptorProto,
        prefix: str,
        path: tuple[int, ...],
        by_path: dict[tuple[int, ...], str],
    ) -> None:
        full = prefix + m.name
        self._put(full, path, by_path)
        for k, fld in enumerate(m.field):
            self._put(f"{full}.{fld.name}", (*path, 2, k), by_path)
            behaviors = set(fld.options.Extensions[field_behavior_pb2.field_behavior])
            if behaviors:
                self.behaviors[f"{full}.{fld.name}"] = behaviors
        for j, nested in enumerate(m.nested_type):
            self._message(nested, full + ".", (*path, 3, j), by_path)
        for j, e in enumerate(m.enum_type):
            self._put(f"{full}.{e.name}", (*path, 4, j), by_path)
