"""The HttpRule path template grammar: parsing, matching, decoding, OpenAPI paths."""

from __future__ import annotations

import pytest

from llama_mesh_gateway.path_template import PathTemplate, TemplateError


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/v1/items", "/v1/items", {}),
        ("/v1/items/{name}", "/v1/items/a", {"name": "a"}),
        ("/v1/items/{name=*}", "/v1/items/a%20b", {"name": "a b"}),
        ("/v1/{name=shelves/*}", "/v1/shelves/s1", {"name": "shelves/s1"}),
        ("/v1/{name=shelves/*/books/*}", "/v1/shelves/s/books/b", {"name": "shelves/s/books/b"}),
        ("/v1/{a.b.c=x/*}/{d}", "/v1/x/1/2", {"a.b.c": "x/1", "d": "2"}),
        ("/v1/{path=**}", "/v1/a/b/c", {"path": "a/b/c"}),
        ("/v1/{path=**}", "/v1/", {"path": ""}),
        ("/v1/{p=files/**}", "/v1/files/a/b", {"p": "files/a/b"}),
        ("/v1/*/x/**", "/v1/q/x/r/s", {}),
        ("/v1/{name=things/*}:cancel", "/v1/things/t:cancel", {"name": "things/t"}),
        ("/v1/{name=things/*}:cancel", "/v1/things/a:b:cancel", {"name": "things/a:b"}),
        ("/v1/things:batchGet", "/v1/things:batchGet", {}),
        ("/v1/{path=**}:dl", "/v1/a/b:dl", {"path": "a/b"}),
        # single segment: everything decodes, %2F included
        ("/v1/items/{name}", "/v1/items/a%2Fb%3Ac", {"name": "a/b:c"}),
        # multi segment: %2F / %2f stay encoded, the rest decodes
        ("/v1/{name=s/*}", "/v1/s/a%2fb%20c", {"name": "s/a%2Fb c"}),
        ("/v1/{name=s/*}", "/v1/s/%E2%9C%93", {"name": "s/✓"}),
    ],
)
def test_matches(template: str, path: str, expected: dict[str, str]) -> None:
    assert PathTemplate.parse(template).match(path) == expected


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("/v1/items", "/v1/items/"),
        ("/v1/items/{name}", "/v1/items"),
        ("/v1/items/{name}", "/v1/items/a/b"),
        ("/v1/items/{name}", "/v1/items/"),
        ("/v1/{name=shelves/*}", "/v1/books/s1"),
        ("/v1/{name=shelves/*}", "/v1/shelves%2Fs1"),  # an encoded slash never splits
        ("/v1/{name=things/*}:cancel", "/v1/things/t"),
        ("/v1/{name=things/*}:cancel", "/v1/things/t:undo"),
        ("/v1/{name=things/*}:cancel", "/v1/things/t%3Acancel"),
        ("/v1/{name=things/*}", "/v1/things/t/u"),
        ("/v1/{path=**}", "/v1/a//b"),
    ],
)
def test_does_not_match(template: str, path: str) -> None:
    assert PathTemplate.parse(template).match(path) is None


def test_verbless_template_takes_a_colon_in_the_last_variable() -> None:
    # The route table prefers verb templates; alone, a colon is just a character.
    assert PathTemplate.parse("/v1/{name=things/*}").match("/v1/things/t:x") == {
        "name": "things/t:x"
    }


@pytest.mark.parametrize(
    "template",
    [
        "v1/items",
        "/v1/{name",
        "/v1/{name}}",
        "/v1/{9name}",
        "/v1/{a}/{a}",
        "/v1/{a={b}}",
        "/v1/x{a}",
        "/v1/**/x",
        "/v1//x",
        "/v1/x:",
        "/v1/a*b",
    ],
)
def test_rejects_bad_templates(template: str) -> None:
    with pytest.raises(TemplateError):
        PathTemplate.parse(template)


def test_structure() -> None:
    t = PathTemplate.parse("/v1/{name=sessions/*/tasks/*}:cancel")
    assert t.verb == "cancel"
    assert [s.kind for s in t.segments] == ["literal", "literal", "*", "literal", "*"]
    assert t.variables[0].field_path == "name"
    assert (t.variables[0].start, t.variables[0].end) == (1, 5)
    assert t.literal_count == 3


@pytest.mark.parametrize(
    ("template", "path", "params"),
    [
        (
            "/v1/{name=sessions/*/tasks/*}:cancel",
            "/v1/sessions/{session}/tasks/{task}:cancel",
            {"session": "name", "task": "name"},
        ),
        ("/v1/items/{name}", "/v1/items/{name}", {"name": "name"}),
        ("/v1/{inner.name=inners/*}", "/v1/inners/{inner}", {"inner": "inner.name"}),
        (
            "/v1/{parent=categories/*}/entries",
            "/v1/categories/{category}/entries",
            {"category": "parent"},
        ),
        ("/v1/files/{path=**}", "/v1/files/{path}", {"path": "path"}),
        ("/v1/wild/*/x/**", "/v1/wild/{path}/x/{path2}", {"path": "", "path2": ""}),
    ],
)
def test_openapi_path(template: str, path: str, params: dict[str, str]) -> None:
    got_path, got_params = PathTemplate.parse(template).openapi_path()
    assert got_path == path
    assert {k: v[0] for k, v in got_params.items()} == params
