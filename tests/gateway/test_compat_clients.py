"""The real llama-stack-client and openai SDK against gwtest/v1/compat.proto.

The gateway serves compat.proto's turn and response routes with the http options of
llama_mesh/v1/http_options.proto; the official clients, unchanged, must parse every
answer into their own types, raise their own errors, and read the streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import openai
import pytest
from llama_stack_client import AsyncLlamaStackClient, AsyncStream
from llama_stack_client import BadRequestError as LlamaBadRequest
from llama_stack_client import NotFoundError as LlamaNotFound
from llama_stack_client.types.agents import Turn
from llama_stack_client.types.agents.turn_response_event_payload import (
    AgentTurnResponseStepCompletePayload,
    AgentTurnResponseStepProgressPayload,
    AgentTurnResponseTurnCompletePayload,
)
from llama_stack_client.types.inference_step import InferenceStep
from llama_stack_client.types.shared.content_delta import TextDelta
from llama_stack_client.types.shared_params.user_message import UserMessage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseTextDeltaEvent,
)

from llama_mesh_gateway import GatewayServer

MESSAGES: list[UserMessage] = [{"role": "user", "content": "hello mesh"}]


@pytest.fixture
async def requests_seen() -> list[httpx.Request]:
    return []


@pytest.fixture
async def llama(
    gateway: GatewayServer, requests_seen: list[httpx.Request]
) -> AsyncIterator[AsyncLlamaStackClient]:
    async def seen(request: httpx.Request) -> None:
        requests_seen.append(request)

    async with (
        httpx.AsyncClient(event_hooks={"request": [seen]}) as http,
        AsyncLlamaStackClient(base_url=gateway.url, http_client=http) as client,
    ):
        yield client


@pytest.fixture
async def oai(
    gateway: GatewayServer, requests_seen: list[httpx.Request]
) -> AsyncIterator[openai.AsyncOpenAI]:
    async def seen(request: httpx.Request) -> None:
        requests_seen.append(request)

    async with (
        httpx.AsyncClient(event_hooks={"request": [seen]}) as http,
        openai.AsyncOpenAI(
            base_url=f"{gateway.url}/v1/openai/v1", api_key="sk-test", http_client=http
        ) as client,
    ):
        yield client


# -- llama-stack-client ------------------------------------------------------------


async def test_a_turn_without_stream_is_one_turn(llama: AsyncLlamaStackClient) -> None:
    turn = await llama.agents.turn.create(
        session_id="s1", agent_id="a1", messages=MESSAGES, stream=False
    )
    assert isinstance(turn, Turn)
    assert turn.turn_id == "turn-1" and turn.session_id == "s1"
    assert turn.output_message.content == "ECHO: hello mesh"
    assert turn.output_message.stop_reason == "end_of_turn"
    assert turn.output_attachments == []
    assert turn.input_messages[0].role == "user"
    assert turn.input_messages[0].context is None
    step = turn.steps[0]
    assert isinstance(step, InferenceStep)  # picked by its step_type discriminator
    assert step.api_model_response.tool_calls == []  # model_response, renamed by Stainless
    assert isinstance(turn.started_at, datetime) and turn.completed_at is not None
    assert turn.started_at < turn.completed_at


async def test_a_streamed_turn_is_chunks_in_order(llama: AsyncLlamaStackClient) -> None:
    stream = await llama.agents.turn.create(
        session_id="s1", agent_id="a1", messages=MESSAGES, stream=True
    )
    assert isinstance(stream, AsyncStream)
    chunks = [chunk async for chunk in stream]
    payloads = [c.event.payload for c in chunks if c.event is not None]
    kinds = [p.event_type for p in payloads]
    assert kinds == ["step_start"] + ["step_progress"] * 4 + ["step_complete", "turn_complete"]
    deltas = [p.delta for p in payloads if isinstance(p, AgentTurnResponseStepProgressPayload)]
    texts = [d for d in deltas if isinstance(d, TextDelta)]
    assert len(texts) == len(deltas) == 4 and all(d.type == "text" for d in texts)
    assert "".join(d.text for d in texts) == "ECHO: hello mesh"
    complete, last = payloads[-2:]
    assert isinstance(complete, AgentTurnResponseStepCompletePayload)
    assert isinstance(complete.step_details, InferenceStep)
    assert isinstance(last, AgentTurnResponseTurnCompletePayload)
    turn = last.turn
    assert isinstance(turn, Turn)
    assert turn.output_message.content == "ECHO: hello mesh"


async def test_an_error_inside_a_turn_stream_is_an_error_chunk(
    llama: AsyncLlamaStackClient,
) -> None:
    """As llama-stack sends it: a chunk with `error`, which the Agent helper reads."""
    stream = await llama.agents.turn.create(
        session_id="s1", agent_id="fails-midway", messages=MESSAGES, stream=True
    )
    assert isinstance(stream, AsyncStream)
    chunks = [chunk async for chunk in stream]
    first = chunks[0].event
    assert first is not None and first.payload.event_type == "step_start"
    last = chunks[-1]
    assert last.event is None
    assert last.error == {"message": "model 'nope' not found"}


async def test_turn_errors_are_the_clients_own(
    llama: AsyncLlamaStackClient, requests_seen: list[httpx.Request]
) -> None:
    for stream in (False, True):
        with pytest.raises(LlamaNotFound) as missing:
            await llama.agents.turn.create(
                session_id="s1", agent_id="missing", messages=MESSAGES, stream=stream
            )
        assert missing.value.body == {"detail": "agent missing not found"}
    with pytest.raises(LlamaBadRequest) as bad:
        await llama.agents.turn.create(
            session_id="s1", agent_id="a1", messages=[UserMessage(role="user", content="")]
        )
    assert bad.value.body == {"detail": "messages: a message is empty"}
    assert len(requests_seen) == 3  # x-should-retry: false, so no retries


async def test_comma_separated_query_arrays(llama: AsyncLlamaStackClient) -> None:
    """llama-stack-client writes a list query parameter as `turn_ids=t1,t2`."""
    session = await llama.agents.session.retrieve("s1", agent_id="a1", turn_ids=["t1", "t2"])
    assert [t.turn_id for t in session.turns] == ["t1", "t2"]


# -- openai ------------------------------------------------------------------------


async def test_a_response_without_stream(oai: openai.AsyncOpenAI) -> None:
    response = await oai.responses.create(model="m", input="hi")
    assert isinstance(response, Response)
    assert response.output_text == "ECHO: hi"
    assert response.created_at == 1796036340  # an int64 as a JSON number
    assert response.previous_response_id is None and response.error is None
    assert response.output[0].type == "message"


async def test_a_streamed_response_is_typed_events(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.responses.create(model="m", input="hi", stream=True)
    events = [event async for event in stream]
    assert isinstance(events[0], ResponseCreatedEvent)
    assert events[0].response.status == "in_progress"
    deltas = events[1:-1]
    assert all(isinstance(e, ResponseTextDeltaEvent) for e in deltas)
    assert "".join(e.delta for e in deltas) == "ECHO: hi"  # type: ignore[union-attr]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert isinstance(events[-1], ResponseCompletedEvent)
    assert events[-1].response.output_text == "ECHO: hi"


async def test_an_error_inside_a_response_stream_raises(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.responses.create(model="fails-midway", input="hi", stream=True)
    seen = []
    with pytest.raises(openai.APIError) as caught:
        async for event in stream:
            seen.append(event.type)
    assert seen == ["response.created"]
    assert caught.value.message == "model 'fails-midway' broke"
    assert caught.value.code == "invalid_argument"


async def test_response_errors_are_the_sdks_own(
    oai: openai.AsyncOpenAI, requests_seen: list[httpx.Request]
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await oai.responses.retrieve("missing")
    assert missing.value.code == "response_not_found"  # the ErrorInfo reason
    assert missing.value.type == "invalid_request_error"
    assert missing.value.message.startswith("Error code: 404")
    with pytest.raises(openai.BadRequestError) as bad:
        await oai.responses.create(model="invalid", input="hi")
    assert bad.value.param == "model"  # the BadRequest field violation
    assert len(requests_seen) == 2


async def test_query_parameters_as_the_sdk_writes_them(oai: openai.AsyncOpenAI) -> None:
    """`include[]=a&include[]=b` (brackets), `order=asc` (a short enum name)."""
    page = await oai.responses.input_items.list(
        "resp-1",
        include=["a", "b"],  # type: ignore[list-item]  # not values the SDK knows: echoed back
        order="asc",
        limit=3,
    )
    text = page.data[0].content[0].text  # type: ignore[index, union-attr]  # a message item
    assert text == "after= limit=3 order=ORDER_ASC include=['a', 'b']"


async def test_x_should_retry_follows_the_status_code(
    gateway: GatewayServer, requests_seen: list[httpx.Request]
) -> None:
    """Stainless clients retry every 5xx unless `x-should-retry` says otherwise."""

    async def seen(request: httpx.Request) -> None:
        requests_seen.append(request)

    async with (
        httpx.AsyncClient(event_hooks={"request": [seen]}) as http,
        openai.AsyncOpenAI(
            base_url=gateway.url, api_key="sk-test", http_client=http, max_retries=1
        ) as client,
    ):
        with pytest.raises(openai.InternalServerError):  # INTERNAL: a bug, not retried
            await client.post("/v1/fail", body={"small": 13, "name": "a bug"}, cast_to=object)
        assert len(requests_seen) == 1
        with pytest.raises(openai.InternalServerError):  # UNAVAILABLE: retried
            await client.post("/v1/fail", body={"small": 14, "name": "later"}, cast_to=object)
        assert len(requests_seen) == 3
