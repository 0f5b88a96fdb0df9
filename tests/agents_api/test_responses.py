# mypy: disable-error-code="arg-type,list-item,union-attr,typeddict-item"
# mypy: disable-error-code="operator,misc,index,attr-defined"
# (the clients are called with plain JSON dicts and their union results read as the
# tests know them to be, as their users do; their TypedDicts and unions are not the point)
"""The Responses API through the real gateway with the real openai SDK: the built-in
agent service answers on the scripted model."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import httpx
import openai
import pytest
from llama_stack_client import AsyncLlamaStackClient
from nats import connect as nats_connect
from nats.aio.msg import Msg

from llama_mesh.core.failpoints import armed, crash
from llama_mesh.launch.nats_server import EmbeddedNats
from llama_mesh.testing import Pause, RecordedRequest, Reply, ToolCall
from llama_mesh.v1 import responses_pb2, responses_pb2_grpc

from .conftest import AgentsMesh, echo

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
async def oai(agents_mesh: AgentsMesh) -> AsyncIterator[openai.AsyncOpenAI]:
    async with (
        httpx.AsyncClient(timeout=30) as http,
        openai.AsyncOpenAI(
            base_url=f"{agents_mesh.url}/v1/openai/v1",
            api_key="none",
            http_client=http,
            max_retries=0,
        ) as client,
    ):
        yield client


def weather(request: RecordedRequest) -> Reply:
    """Asks for the weather; says what the tool answered once it has."""
    last = request.messages[-1]
    if last["role"] == "tool":
        return Reply(f"It is {last['content']}.")
    return Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_w")])


def _roles(request: RecordedRequest) -> list[tuple[str, str]]:
    return [(m["role"], m.get("content") or "") for m in request.messages]


async def test_a_response_and_retrieving_it(
    agents_mesh: AgentsMesh, oai: openai.AsyncOpenAI
) -> None:
    agents_mesh.model.respond_with(echo)
    response = await oai.responses.create(
        model="scripted", input="hello responses", instructions="Be brief."
    )
    assert response.status == "completed"
    assert response.output_text == "ECHO(1): hello responses"
    assert response.id.startswith("resp-") and response.model == "scripted"
    assert response.instructions == "Be brief."
    [request] = agents_mesh.model.requests
    assert _roles(request) == [("system", "Be brief."), ("user", "hello responses")]
    again = await oai.responses.retrieve(response.id)
    assert again.output_text == response.output_text
    assert again.output[0].id == response.output[0].id


async def test_a_streamed_response_is_openais_event_sequence(
    agents_mesh: AgentsMesh, oai: openai.AsyncOpenAI
) -> None:
    agents_mesh.model.respond_with(echo)
    stream = await oai.responses.create(model="scripted", input="stream me", stream=True)
    events = [event async for event in stream]
    text = "ECHO(1): stream me"
    deltas = (len(text) + 3) // 4
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.status == "in_progress"
    pieces = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(pieces) == text
    completed = events[-1].response
    assert completed.status == "completed" and completed.output_text == text
    item_ids = {e.item_id for e in events if e.type == "response.output_text.delta"}
    assert item_ids == {completed.output[0].id}
    assert (await oai.responses.retrieve(completed.id)).output_text == text


async def test_a_response_is_stored_as_it_starts_and_as_it_ends(
    agents_mesh: AgentsMesh,
    oai: openai.AsyncOpenAI,
    client: AsyncLlamaStackClient,
    nats: EmbeddedNats,
) -> None:
    """A response's id is found from the moment it is handed out: in progress while
    it runs, completed once it ends (two writes, no more)."""
    pause = Pause()
    agents_mesh.model.script(Reply(chunks=["Hello ", pause, "there."]), "Once.")
    writes: Counter[str] = Counter()
    watcher = await nats_connect(nats.url)
    try:

        async def count(msg: Msg) -> None:
            writes[msg.subject.rpartition(".")[2]] += 1

        await watcher.subscribe("$KV.mesh_responses.>", cb=count)
        stream = await oai.responses.create(model="scripted", input="hi", stream=True)
        async for event in stream:
            if event.type == "response.created":
                response_id = event.response.id
            if event.type == "response.output_text.delta" and event.delta == "Hello ":
                # The model holds the rest: the response runs, and says so.
                listed = (await client.responses.list()).data
                assert [(r.id, r.status) for r in listed] == [(response_id, "in_progress")]
                running = await oai.responses.retrieve(response_id)
                assert (running.status, running.output) == ("in_progress", [])
                pause.release()
            if event.type == "response.completed":
                streamed = event.response
        created = await oai.responses.create(model="scripted", input="again")
        await watcher.flush()
        stored = await oai.responses.retrieve(streamed.id)
        assert (stored.status, stored.output_text) == ("completed", "Hello there.")
        assert stored.output[0].id == streamed.output[0].id  # the item the deltas named
        assert (await oai.responses.retrieve(created.id)).output_text == "Once."
        assert writes == {streamed.id: 2, created.id: 2}
    finally:
        await watcher.close()


async def test_a_response_whose_end_was_never_stored_is_completed_from_its_task(
    agents_mesh: AgentsMesh, oai: openai.AsyncOpenAI, client: AsyncLlamaStackClient
) -> None:
    """The control plane that ran a response stops between its task's end and storing
    it (a failpoint raises there, as a crash would end the call): the response is not
    lost, nor left in progress for ever; the next read completes it from its task."""
    agents_mesh.model.respond_with(echo)
    with armed("responses.ended", crash), pytest.raises(openai.InternalServerError):
        await oai.responses.create(model="scripted", input="not lost")
    [listed] = (await client.responses.list()).data
    assert (listed.status, listed.output[0].content[0].text) == ("completed", "ECHO(1): not lost")
    again = await oai.responses.retrieve(listed.id)
    assert (again.status, again.output_text) == ("completed", "ECHO(1): not lost")
    assert again.output[0].id == listed.output[0].id  # completed once, then read as stored
    assert again.usage is not None and again.usage.total_tokens > 0
    # The chain goes on from it: the model is sent the exchange the caller never saw.
    follow = await oai.responses.create(
        model="scripted", input="and then", previous_response_id=listed.id
    )
    assert follow.output_text == "ECHO(2): and then"
    assert _roles(agents_mesh.model.requests[-1]) == [
        ("user", "not lost"),
        ("assistant", "ECHO(1): not lost"),
        ("user", "and then"),
    ]


async def test_a_chain_sends_the_model_the_whole_conversation(
    agents_mesh: AgentsMesh, oai: openai.AsyncOpenAI, client: AsyncLlamaStackClient
) -> None:
    agents_mesh.model.respond_with(echo)
    first = await oai.responses.create(model="scripted", input="one")
    second = await oai.responses.create(
        model="scripted", input="two", previous_response_id=first.id
    )
    third = await oai.responses.create(
        model="scripted", input="three", previous_response_id=second.id
    )
    assert third.output_text == "ECHO(3): three"
    assert third.previous_response_id == second.id  # llama-stack 0.2.12 answers null
    assert _roles(agents_mesh.model.requests[2]) == [
        ("user", "one"),
        ("assistant", "ECHO(1): one"),
        ("user", "two"),
        ("assistant", "ECHO(2): two"),
        ("user", "three"),
    ]
    items = await oai.responses.input_items.list(third.id)
    texts = [i.content for i in items.data]
    assert texts[0] == "three" and len(texts) == 5  # newest first
    # The openai SDK has no list: llama-stack-client's, newest first, with the input.
    listed = await client.responses.list()
    assert [r.id for r in listed.data] == [third.id, second.id, first.id]
    assert [i.content for i in listed.data[0].input][-1] == "three"
    older = await client.responses.list(after=third.id, limit=1)
    assert [r.id for r in older.data] == [second.id] and older.has_more
    oldest = await client.responses.list(order="asc", model="scripted")
    assert [r.id for r in oldest.data] == [first.id, second.id, third.id]


async def test_a_function_tool_is_returned_and_answered_in_the_next_request(
    agents_mesh: AgentsMesh, oai: openai.AsyncOpenAI
) -> None:
    agents_mesh.model.respond_with(weather)
    asked = await oai.responses.create(
        model="scripted",
        input="weather in Paris?",
        tools=[WEATHER],
    )
    [call] = asked.output
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments), call.call_id) == (
        "get_weather",
        {"city": "Paris"},
        "call_w",
    )
    assert agents_mesh.model.requests[0].body["tools"][0]["function"]["name"] == "get_weather"
    answered = await oai.responses.create(
        model="scripted",
        previous_response_id=asked.id,
        input=[{"type": "function_call_output", "call_id": "call_w", "output": "sunny"}],
        tools=[WEATHER],
    )
    assert answered.output_text == "It is sunny."
    messages = agents_mesh.model.requests[1].messages
    assert messages[-2]["tool_calls"][0]["id"] == "call_w"
    assert messages[-1] == {"role": "tool", "content": "sunny", "tool_call_id": "call_w"}


async def test_a_streamed_function_call(agents_mesh: AgentsMesh, oai: openai.AsyncOpenAI) -> None:
    agents_mesh.model.respond_with(weather)
    stream = await oai.responses.create(
        model="scripted",
        input="weather?",
        tools=[WEATHER],
        stream=True,
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[3].arguments == '{"city": "Paris"}'


async def test_model_may_name_an_agent(
    agents_mesh: AgentsMesh, oai: openai.AsyncOpenAI, client: AsyncLlamaStackClient
) -> None:
    agents_mesh.model.respond_with(echo)
    agent = await client.agents.create(
        agent_config={"model": "scripted", "instructions": "You are the agent."}
    )
    response = await oai.responses.create(model=agent.agent_id, input="hi agent")
    assert response.output_text == "ECHO(1): hi agent"
    assert _roles(agents_mesh.model.requests[0])[0] == ("system", "You are the agent.")


async def test_bad_input_is_the_sdks_own_errors(
    agents_mesh: AgentsMesh, oai: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await oai.responses.retrieve("resp-nope")
    assert missing.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        await oai.responses.create(model="scripted", input="x", previous_response_id="resp-x")
    with pytest.raises(openai.BadRequestError) as model:
        await oai.responses.create(model="no-such-model", input="x")
    assert model.value.param == "model"
    with pytest.raises(openai.BadRequestError) as item:
        await oai.responses.create(
            model="scripted",
            input=[{"role": "robot", "content": "x"}],
            stream=True,
        )
    assert item.value.param == "input[0].role"
    assert agents_mesh.model.requests == []
    stub = responses_pb2_grpc.ResponsesAPIStub(agents_mesh.channel)
    with pytest.raises(grpc.aio.AioRpcError) as grpc_missing:
        await stub.GetResponse(responses_pb2.GetResponseRequest(response_id="resp-nope"))
    assert grpc_missing.value.code() == grpc.StatusCode.NOT_FOUND
