"""The Responses API: a response is a turn of the built-in agent service.

Creating a response creates a task of the built-in agent service (its input a
core/agent_turns.TurnInput: the model's configuration, or an agent's, and the whole
conversation as chat history) and follows the task's events as a turn (TurnView):
text deltas stream as `response.output_text.delta`, and the result is the output,
the assistant's message and the calls of function tools (`client_tools="return"`:
the run ends with them, for the caller to answer in its next request). A stored
response (`responses` bucket) keeps its conversation's input items, so that
`previous_response_id` continues it, with the model reading all of it again.

A response is stored as it starts (in progress) and again as it ends. One whose end
nobody stored (its caller left, or its control plane stopped, before the task ended)
is completed from its task when it is next read: a response id a client was given is
always found, and says what its task did.

Differences from llama-stack 0.2.12: unknown responses are NOT_FOUND (400 there);
`previous_response_id` is returned as sent (null there); the stream carries OpenAI's
whole event sequence (output_item, content_part, output_text.done as well).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from llama_mesh.control_plane.agents_api.agents import Agents, check_id, not_found
from llama_mesh.control_plane.agents_api.response_items import (
    chat_messages,
    check_conversation,
    input_items,
    item_json,
    item_proto,
    message_item,
    output_items,
)
from llama_mesh.control_plane.agents_api.response_pages import (
    input_items_page,
    responses_page,
    stored_items,
)
from llama_mesh.control_plane.agents_api.response_request import (
    apply_sampling,
    check_request,
    function_tools,
    new_id,
    response_object,
)
from llama_mesh.control_plane.agents_api.turn_view import TurnView, error_message
from llama_mesh.control_plane.agents_api.turns import Turns
from llama_mesh.control_plane.task_creation import create_task, new_task_id
from llama_mesh.control_plane.tasks import Tasks
from llama_mesh.core import proto_time
from llama_mesh.core.agent_turns import TurnInput
from llama_mesh.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from llama_mesh.core.failpoints import failpoint
from llama_mesh.core.json_values import to_python, to_struct, to_value
from llama_mesh.core.lifecycle import is_final
from llama_mesh.core.names import AGENTS_SERVICE, TaskName, session_name
from llama_mesh.jetstream.buckets import Unchanged
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import task_key
from llama_mesh.jetstream.live_events import StoredEvent
from llama_mesh.rpc.identity import caller
from llama_mesh.v1 import agents_pb2 as ag
from llama_mesh.v1 import resources_pb2
from llama_mesh.v1 import responses_pb2 as rs

logger = logging.getLogger(__name__)

RESPONSE_LABEL = "response_chain"  # on the sessions responses run in: the chain's first
# Reading the events of a response's ended task to complete it (_settled): they are all
# stored, so this bounds only a store that does not answer.
SETTLE_TIMEOUT = 10.0


@dataclass
class _Run:
    """A response being made: its object, the task that makes it, its conversation."""

    response: rs.ResponseObject
    task: resources_pb2.Task
    conversation: list[dict[str, Any]]
    store: bool
    namespace: str  # its creator's, kept with it
    view: TurnView = field(init=False)

    def __post_init__(self) -> None:
        self.view = TurnView(self.task)


class Responses:
    """Create, stream, get, list and delete responses."""

    def __init__(self, state: MeshState, agents: Agents, tasks: Tasks, turns: Turns) -> None:
        self.state = state
        self.agents = agents
        self.tasks = tasks
        self.turns = turns

    # -- what runs the response ---------------------------------------------------------

    async def _config(self, model: str) -> tuple[ag.AgentConfig, str]:
        """The configuration a response of `model` runs with (a model of the deployment,
        or an agent the Agents API created) and the agent id it names."""
        if not model:
            raise InvalidArgumentError("model is required", field="model")
        try:
            models = await self.agents.models()
        except FailedPreconditionError:
            models = []
        if model in models:
            return ag.AgentConfig(model=model, instructions=""), model
        try:
            target = await self.agents.target(model)
        except NotFoundError:
            raise InvalidArgumentError(
                f"model: {model!r} is neither a model of the deployment ({models}) nor an agent",
                field="model",
            ) from None
        if not target.created:
            raise InvalidArgumentError(
                f"model: agent {model!r} is deployed as a service; responses run the "
                "deployment's models and the agents the Agents API created",
                field="model",
            )
        config = ag.AgentConfig()
        config.CopyFrom(target.agent.agent_config)
        return config, target.agent.agent_id

    async def _stored(self, response_id: str, *, settle: bool = True) -> rs.StoredResponse:
        check_id("response", response_id, reason="response_not_found")
        found = await self.state.responses.find(response_id)
        # Another namespace's response is, to a caller confined to one, not there.
        if found is None or not caller().sees(found[0].namespace):
            raise not_found("response", response_id, reason="response_not_found")
        return await self._settled(*found) if settle else found[0]

    async def _settled(self, stored: rs.StoredResponse, revision: int) -> rs.StoredResponse:
        """`stored`, completed (or failed) from its task if the task ended with nobody
        there to store the end: its caller left, or its control plane stopped."""
        if stored.response.status != "in_progress":
            return stored
        name = TaskName.parse(stored.task, "task")
        task = await self.state.tasks.get(task_key(name), str(name))
        if not is_final(task.state):
            return stored  # still running: in progress is the truth
        response = rs.ResponseObject()
        response.CopyFrom(stored.response)  # `stored` stays what was read, for the write
        run = _Run(
            response,
            task,
            stored_items(stored.response.input),
            store=True,
            namespace=stored.namespace,
        )
        try:
            # The task has ended, so its events end with its last: a short read.
            async with (
                asyncio.timeout(SETTLE_TIMEOUT),
                self.turns.events(name.task_id, history=True) as events,
            ):
                async for _ in self._deltas(run, events):
                    pass
        except TimeoutError:
            logger.warning(
                "response %s: the events of its ended task %s were not all read in %s s; "
                "left in progress",
                stored.response.id,
                name,
                SETTLE_TIMEOUT,
            )
            return stored
        settled = await self._finish(run, write=False)

        def complete(current: rs.StoredResponse) -> None:
            if current.response.status != "in_progress":
                raise Unchanged  # its caller (or another reader) stored the end first
            current.CopyFrom(settled)

        final, _ = await self.state.responses.mutate_from(
            stored.response.id,
            stored.response.id,
            complete,
            (stored, revision),
        )
        logger.info(
            "response %s %s (completed from its task)", final.response.id, final.response.status
        )
        return final

    async def _session(self, previous: rs.StoredResponse | None, response_id: str) -> str:
        """The session the response runs in: its chain's (so a chain's responses run
        in order), a new one for a new chain."""
        if previous is not None:
            return str(TaskName.parse(previous.task).session_id)
        session_id = str(uuid.uuid4())
        session = resources_pb2.Session(
            name=session_name(session_id),
            labels={RESPONSE_LABEL: response_id},
            overlap_policy=resources_pb2.OVERLAP_POLICY_QUEUE,
            namespace=caller().namespace,
        )
        stamp = proto_time.now()
        session.create_time.CopyFrom(stamp)
        session.update_time.CopyFrom(stamp)
        await self.state.sessions.create(session_id, session)
        return session_id

    async def _start(self, request: rs.CreateResponseRequest, task_id: str) -> _Run:
        """Check the request, create the task (`task_id`); INVALID_ARGUMENT / NOT_FOUND
        before anything runs."""
        check_request(request)
        config, agent_id = await self._config(request.model)
        apply_sampling(config, request)
        tools, choice = function_tools(request, config)
        if not request.HasField("input"):
            raise InvalidArgumentError("input is required", field="input")
        new = input_items(to_python(request.input), new_id)
        previous = None
        history: list[dict[str, Any]] = []
        if request.HasField("previous_response_id"):
            previous = await self._stored(request.previous_response_id)
            history = [
                *stored_items(previous.response.input),
                *(item_json(o) for o in previous.response.output),
            ]
        conversation = [*history, *new]
        check_conversation(conversation, len(new))
        messages = chat_messages(conversation)
        last = messages[-1]
        turn_messages = []
        if last["role"] == "user":
            turn_messages = [{"role": "user", "content": last["content"]}]
            messages = messages[:-1]
        turn = TurnInput(
            agent_id=agent_id,
            agent_config=json_format.MessageToDict(config, preserving_proto_field_name=True),
            messages=turn_messages,
            chat_history=messages,  # type: ignore[arg-type]  # validated as ChatMessageInput
            instructions=request.instructions if request.HasField("instructions") else None,
            function_tools=tools,
            tool_choice=choice,
            client_tools="return",
        )
        response_id = new_id("resp-")
        session_id = await self._session(previous, response_id)
        tasks = self.tasks
        task = await create_task(
            tasks.state,
            tasks.registry,
            tasks.sessions,
            session_name(session_id),
            resources_pb2.Task(
                service=AGENTS_SERVICE,
                input=to_struct(
                    turn.model_dump(mode="json", exclude_defaults=True), "the response's input"
                ),
            ),
            "",
            task_id=task_id,
        )
        response = response_object(request, response_id)
        run = _Run(
            response,
            task,
            conversation,
            store=request.store or not request.HasField("store"),
            namespace=caller().namespace,
        )
        # Stored before its id is handed out, so that the id is always found (_settled).
        await self._save(run)
        logger.info(
            "response %s: task %s created (model %s)", response_id, task.name, request.model
        )
        return run

    def _record(self, run: _Run) -> rs.StoredResponse:
        stored = rs.StoredResponse(
            response=run.response, task=run.task.name, namespace=run.namespace
        )
        stored.response.input.CopyFrom(to_value(run.conversation).list_value)
        stored.create_time.CopyFrom(run.task.create_time)
        return stored

    async def _save(self, run: _Run) -> None:
        if run.store:
            await self.state.responses.put(run.response.id, self._record(run))

    # -- following the task -------------------------------------------------------------

    async def _deltas(self, run: _Run, events: AsyncIterator[StoredEvent]) -> AsyncIterator[str]:
        """The text deltas of the response's task, until it ends."""
        view = run.view
        async for stored in events:
            event = resources_pb2.Envelope.FromString(stored.data).task_event
            for payload in view.feed(event):
                progress = payload.step_progress
                if payload.HasField("step_progress") and progress.delta.HasField("text"):
                    yield progress.delta.text.text
            if view.final is not None:
                return

    async def _finish(
        self, run: _Run, message_id: str = "", *, write: bool = True
    ) -> rs.StoredResponse:
        """The response once its task ended, completed with its output (its message
        item `message_id`, if the stream named one) or failed; stored if `write`;
        its record returned."""
        view, response = run.view, run.response
        task = await self.turns.task_of(view)
        usage = task.usage
        response.usage.CopyFrom(
            rs.ResponseUsage(
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
            )
        )
        if view.result is not None:
            items = output_items(view.result.response, view.result.pending_tool_calls, new_id)
            del response.output[:]
            response.output.extend(item_proto(i) for i in items)
            response.status = "completed"
            if message_id and response.output and response.output[0].HasField("message"):
                response.output[0].message.id = message_id  # the item the deltas named
        else:
            response.status = "failed"
            response.error.CopyFrom(
                rs.ResponseError(code="server_error", message=error_message(task))
            )
        if write:
            failpoint("responses.ended")  # the task ended; the response not yet stored
            await self._save(run)
            logger.info("response %s %s", response.id, response.status)
        return self._record(run)

    # -- the RPCs ---------------------------------------------------------------------------

    async def create(self, request: rs.CreateResponseRequest) -> rs.ResponseObject:
        task_id = new_task_id()
        # Followed from before the task exists: its events need no read of the stream.
        async with self.turns.events(task_id, history=False) as events:
            run = await self._start(request, task_id)
            async for _ in self._deltas(run, events):
                pass
        await self._finish(run)
        return run.response

    async def stream(
        self, request: rs.CreateResponseRequest
    ) -> AsyncIterator[rs.StreamResponseResponse]:
        task_id = new_task_id()
        async with self.turns.events(task_id, history=False) as events:
            run = await self._start(request, task_id)
            async for event in self._stream(run, events):
                yield event

    async def _stream(
        self, run: _Run, events: AsyncIterator[StoredEvent]
    ) -> AsyncIterator[rs.StreamResponseResponse]:
        sequence = 0

        def numbered(**event: Any) -> rs.StreamResponseResponse:
            nonlocal sequence
            (member,) = event.values()
            member.sequence_number = sequence
            sequence += 1
            return rs.StreamResponseResponse(**event)

        def lifecycle(response: rs.ResponseObject) -> rs.ResponseLifecycleEvent:
            return rs.ResponseLifecycleEvent(response=response)

        yield numbered(created=lifecycle(run.response))
        yield numbered(in_progress=lifecycle(run.response))
        message_id, text = new_id("msg_"), list[str]()
        part = rs.OutputContent(output_text=rs.OutputText())
        async for delta in self._deltas(run, events):
            if not text:
                added = item_proto(message_item(message_id, "", "in_progress"))
                yield numbered(output_item_added=rs.OutputItemEvent(output_index=0, item=added))
                yield numbered(
                    content_part_added=rs.ContentPartEvent(item_id=message_id, part=part)
                )
            text.append(delta)
            yield numbered(
                output_text_delta=rs.OutputTextDeltaEvent(item_id=message_id, delta=delta)
            )
        await self._finish(run, message_id if text else "")
        output = run.response.output
        if run.response.status != "completed":
            yield numbered(failed=lifecycle(run.response))
            return
        for index, item in enumerate(output):
            if item.HasField("message"):
                done_text = "".join(p.output_text.text for p in item.message.content)
                if not text:
                    added = item_proto(message_item(item.message.id, "", "in_progress"))
                    yield numbered(
                        output_item_added=rs.OutputItemEvent(output_index=index, item=added)
                    )
                    yield numbered(
                        content_part_added=rs.ContentPartEvent(
                            item_id=item.message.id, output_index=index, part=part
                        )
                    )
                yield numbered(
                    output_text_done=rs.OutputTextDoneEvent(
                        item_id=item.message.id, output_index=index, text=done_text
                    )
                )
                yield numbered(
                    content_part_done=rs.ContentPartEvent(
                        item_id=item.message.id, output_index=index, part=item.message.content[0]
                    )
                )
            else:
                yield numbered(output_item_added=rs.OutputItemEvent(output_index=index, item=item))
                yield numbered(
                    function_call_arguments_done=rs.FunctionCallArgumentsDoneEvent(
                        item_id=item.function_call.id,
                        output_index=index,
                        arguments=item.function_call.arguments,
                    )
                )
            yield numbered(output_item_done=rs.OutputItemEvent(output_index=index, item=item))
        yield numbered(completed=lifecycle(run.response))

    async def get(self, request: rs.GetResponseRequest) -> rs.ResponseObject:
        response = (await self._stored(request.response_id)).response
        response.ClearField("input")
        return response

    async def _all(self) -> list[rs.StoredResponse]:
        who = caller()
        stored = [
            s if s.response.status != "in_progress" else await self._stored(s.response.id)
            for _, s in await self.state.responses.scan()
            if who.sees(s.namespace)
        ]
        return sorted(stored, key=lambda s: (s.create_time.ToNanoseconds(), s.response.id))

    async def list(self, request: rs.ListResponsesRequest) -> rs.ListResponsesResponse:
        return responses_page(await self._all(), request)

    async def input_items(self, request: rs.ListInputItemsRequest) -> rs.ListInputItemsResponse:
        return input_items_page(await self._stored(request.response_id), request)

    async def delete(self, request: rs.DeleteResponseRequest) -> rs.DeleteResponseResponse:
        await self._stored(request.response_id, settle=False)
        await self.state.responses.delete(request.response_id)
        logger.info("response %s deleted", request.response_id)
        return rs.DeleteResponseResponse(id=request.response_id, object="response", deleted=True)


__all__ = ["Responses"]
