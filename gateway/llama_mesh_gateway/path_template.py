"""HttpRule path templates: the grammar of google/api/http.proto, parsed and matched.

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

`{field}` is `{field=*}`. Matching works on the raw (still percent-encoded) request
path, split on "/", so an encoded slash never splits a segment. The verb is the text
after the last ":" of the raw last segment, so `.../tasks/t1:cancel` matches a
`:cancel` template and never binds "t1:cancel" to the last variable (a variable that
must hold a literal colon is sent as `%3A`). Variable values are percent-decoded as
the spec says: a single-segment variable decodes everything; a multi-segment one
decodes everything except `%2F` / `%2f`, which stay as they are.

>>> t = PathTemplate.parse("/v1/{name=sessions/*/tasks/*}:cancel")
>>> t.match("/v1/sessions/s1/tasks/t%201:cancel")
{'name': 'sessions/s1/tasks/t 1'}
>>> t.match("/v1/sessions/s1/tasks/t1") is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ENCODED_SLASH = re.compile(r"%2[Ff]")


class TemplateError(ValueError):
    """A path template does not follow the HttpRule grammar."""


@dataclass(frozen=True)
class Segment:
    """One pattern segment: a literal, `*` (one segment) or `**` (zero or more)."""

    kind: str  # "literal" | "*" | "**"
    text: str = ""


@dataclass(frozen=True)
class Variable:
    """A field path bound to segments [start, end) of the pattern."""

    field_path: str
    start: int
    end: int

    def is_multi_segment(self, segments: tuple[Segment, ...]) -> bool:
        """Whether the variable can span more than one path segment."""
        covered = segments[self.start : self.end]
        return len(covered) > 1 or any(s.kind == "**" for s in covered)


@dataclass(frozen=True)
class PathTemplate:
    """A parsed HttpRule path template."""

    source: str
    segments: tuple[Segment, ...]
    variables: tuple[Variable, ...]
    verb: str | None

    @classmethod
    def parse(cls, source: str) -> PathTemplate:
        """Parse a template; raises TemplateError with the reason."""
        if not source.startswith("/"):
            raise TemplateError(f"{source!r}: a template starts with '/'")
        body, verb = _split_verb(source[1:], source)
        segments: list[Segment] = []
        variables: list[Variable] = []
        pos = 0
        while True:
            if pos < len(body) and body[pos] == "{":
                close = body.find("}", pos)
                if close < 0:
                    raise TemplateError(f"{source!r}: unclosed '{{'")
                inner = body[pos + 1 : close]
                field_path, _, pattern = inner.partition("=")
                if not _IDENT.match(field_path):
                    raise TemplateError(f"{source!r}: bad field path {field_path!r}")
                if any(v.field_path == field_path for v in variables):
                    raise TemplateError(f"{source!r}: {field_path!r} bound twice")
                start = len(segments)
                for part in (pattern or "*").split("/"):
                    if "{" in part or "}" in part:
                        raise TemplateError(f"{source!r}: nested variable")
                    segments.append(_segment(part, source))
                variables.append(Variable(field_path, start, len(segments)))
                pos = close + 1
            else:
                end = body.find("/", pos)
                end = len(body) if end < 0 else end
                part = body[pos:end]
                if "{" in part or "}" in part:
                    raise TemplateError(f"{source!r}: a variable must be a whole segment")
                segments.append(_segment(part, source))
                pos = end
            if pos == len(body):
                break
            if body[pos] != "/":
                raise TemplateError(f"{source!r}: a variable must be a whole segment")
            pos += 1
        for i, seg in enumerate(segments):
            if seg.kind == "**" and i != len(segments) - 1:
                raise TemplateError(f"{source!r}: '**' must be the last segment")
        return cls(source, tuple(segments), tuple(variables), verb)

    @property
    def literal_count(self) -> int:
        """How many literal segments; more literals make a more specific template."""
        return sum(1 for s in self.segments if s.kind == "literal")

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Bind the variables from a raw request path, or None if it does not match."""
        if not raw_path.startswith("/"):
            return None
        parts = raw_path[1:].split("/")
        if self.verb is not None:
            head, colon, verb = parts[-1].rpartition(":")
            if not colon or unquote(verb) != self.verb:
                return None
            parts[-1] = head
        ends = _match_segments(self.segments, parts)
        if ends is None:
            return None
        bound: dict[str, str] = {}
        for var in self.variables:
            start = ends[var.start - 1] if var.start > 0 else 0
            raw = "/".join(parts[start : ends[var.end - 1]])
            if var.is_multi_segment(self.segments):
                bound[var.field_path] = "%2F".join(
                    unquote(chunk, errors="strict") for chunk in _ENCODED_SLASH.split(raw)
                )
            else:
                bound[var.field_path] = unquote(raw, errors="strict")
        return bound

    def openapi_path(self) -> tuple[str, dict[str, tuple[str, int]]]:
        """An OpenAPI path and, for each of its parameters, (field path, wildcard index).

        Each `*` of a variable becomes its own parameter named after the literal
        before it (`sessions/*` gives `{session}`), so OpenAPI clients never send a
        slash inside a parameter. `**` becomes one parameter.
        """
        owner: dict[int, Variable] = {}
        for var in self.variables:
            for i in range(var.start, var.end):
                owner[i] = var
        out: list[str] = []
        params: dict[str, tuple[str, int]] = {}
        for i, seg in enumerate(self.segments):
            if seg.kind == "literal":
                out.append(seg.text)
                continue
            holder = owner.get(i)
            base = holder.field_path.replace(".", "_") if holder else "path"
            if holder is not None and holder.end - holder.start > 1 and i > 0:
                prev = self.segments[i - 1]
                if prev.kind == "literal":
                    base = _singular(prev.text)
            name = base
            n = 2
            while name in params:
                name = f"{base}{n}"
                n += 1
            params[name] = (holder.field_path if holder else "", i)
            out.append("{" + name + "}")
        path = "/" + "/".join(out)
        if self.verb is not None:
            path += ":" + self.verb
        return path, params


def _split_verb(body: str, source: str) -> tuple[str, str | None]:
    depth = 0
    last_slash = -1
    last_colon = -1
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0 and ch == "/":
            last_slash = i
        elif depth == 0 and ch == ":":
            last_colon = i
    if depth != 0:
        raise TemplateError(f"{source!r}: unbalanced braces")
    if last_colon > last_slash:
        verb = body[last_colon + 1 :]
        if not verb or "/" in verb:
            raise TemplateError(f"{source!r}: empty verb")
        return body[:last_colon], verb
    return body, None


def _segment(text: str, source: str) -> Segment:
    if text == "*":
        return Segment("*")
    if text == "**":
        return Segment("**")
    if not text or "*" in text:
        raise TemplateError(f"{source!r}: bad segment {text!r}")
    return Segment("literal", text)


def _match_segments(segments: tuple[Segment, ...], parts: list[str]) -> list[int] | None:
    """For each pattern segment, the index in parts just after what it consumed."""
    ends: list[int] = []
    pos = 0
    for seg in segments:
        if seg.kind == "**":
            rest = parts[pos:]
            if rest != [""] and any(p == "" for p in rest):
                return None  # `**` matches zero segments ("/v1/") or non-empty ones
            pos += len(rest)
        else:
            if pos >= len(parts) or parts[pos] == "":
                return None
            if seg.kind == "literal" and unquote(parts[pos]) != seg.text:
                return None
            pos += 1
        ends.append(pos)
    if pos != len(parts):
        return None
    return ends


def _singular(word: str) -> str:
    """An English singular good enough for resource collections."""
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    if word.endswith("lves"):
        return word[:-3] + "f"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and len(word) > 1:
        return word[:-1]
    return word
