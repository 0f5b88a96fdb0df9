"""Pages of the Responses API's lists: the stored responses, a response's input items.

Pure. OpenAI's paging: `after` / `before` name items of the list (by id), `limit`
is 1..100, and `has_more` says whether the window went on past the page.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from llama_mesh.core.errors import InvalidArgumentError
from llama_mesh.core.json_values import to_python, to_struct
from llama_mesh.v1 import responses_pb2 as rs


def stored_items(values: struct_pb2.ListValue) -> list[dict[str, Any]]:
    """A stored response's input items, as JSON."""
    return [to_python(struct_pb2.Value(struct_value=v.struct_value)) for v in values.values]


def responses_page(
    stored: list[rs.StoredResponse], request: rs.ListResponsesRequest
) -> rs.ListResponsesResponse:
    """A page of `stored` (oldest first) as ListResponses answers it."""
    if request.model:
        stored = [s for s in stored if s.response.model == request.model]
    if request.order != rs.ORDER_ASC:
        stored = stored[::-1]
    responses = [s.response for s in stored]
    page, has_more = _page(
        responses, [r.id for r in responses], request.after, "", _limit(request, 50)
    )
    out = rs.ListResponsesResponse(data=page, has_more=has_more, object="list")
    if page:
        out.first_id, out.last_id = page[0].id, page[-1].id
    return out


def input_items_page(
    stored: rs.StoredResponse, request: rs.ListInputItemsRequest
) -> rs.ListInputItemsResponse:
    """A page of the response's input items as ListInputItems answers it."""
    items = [to_struct(i, "input item") for i in stored_items(stored.response.input)]
    if request.order != rs.ORDER_ASC:
        items.reverse()
    ids = [str(to_python(i).get("id", "")) for i in items]
    page, has_more = _page(items, ids, request.after, request.before, _limit(request, 20))
    out = rs.ListInputItemsResponse(data=page, has_more=has_more, object="list")
    if page:
        out.first_id, out.last_id = ids[items.index(page[0])], ids[items.index(page[-1])]
    return out


def _limit(request: rs.ListResponsesRequest | rs.ListInputItemsRequest, default: int) -> int:
    if not request.HasField("limit"):
        return default
    if not 1 <= request.limit <= 100:
        raise InvalidArgumentError(f"limit: between 1 and 100 (got {request.limit})", field="limit")
    return request.limit


def _page(
    items: list[Any], ids: list[str], after: str, before: str, limit: int
) -> tuple[list[Any], bool]:
    """The items after `after` and before `before` (ids in the list), at most `limit`."""
    start, end = 0, len(items)
    if after:
        if after not in ids:
            raise InvalidArgumentError(f"after: {after!r} is not in the list", field="after")
        start = ids.index(after) + 1
    if before:
        if before not in ids:
            raise InvalidArgumentError(f"before: {before!r} is not in the list", field="before")
        end = ids.index(before)
    window = items[start:end]
    return window[:limit], len(window) > limit
