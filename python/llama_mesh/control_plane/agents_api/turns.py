"""Turns: a turn is a task of the agent's service in the agent's session.

Creating a turn creates the task (its input: the turn's messages, and for an agent the
API created, the agent's configuration: core/agent_turns.TurnInput); its events, read
from the task's event stream and folded by turn_view.TurnView, are the turn's stream
and its steps. A turn that calls a client tool waits (WAITING_FOR_INPUT with
AwaitingClientTools); resuming it sends the tool responses into the task (the same
path as any answer: Tasks.send_task_event) and streams what follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from google.protobuf import json_format, struct_pb2

from llama_mesh.control_plane.agents_api.agents import AgentTarget, check_id, not_found
from llama_mesh.control_plane.agents_api.sessions import AgentSessions
from llama_mesh.control_plane.agents_api.turn_view import TurnView, error_message
from llama_mesh.control_plane.task_creation import create_task, new_task_id
from llama_mesh.control_plane.tasks import Tasks
from llama_mesh.core import agent_config
from llama_mesh.core import agent_events as ae
from llama_mesh.core.agent_turns import TurnInput
from llama_mesh.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    UnavailableError,
    UnimplementedError,
    error_for_code,
)
from llama_mesh.core.json_values import to_python, to_struct
from llama_mesh.core.lifecycle import FAILED, WAITING
from llama_mesh.core.names import TaskName
from llama_mesh.core.status import status_code
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.event_history import events_so_far
from llama_mesh.jetstream.journal import task_key
from llama_mesh.jetstream.live_events import LiveEvents, StoredEvent
from llama_mesh.v1 import agents_pb2 as ag
from llama_mesh.v1 import control_plane_pb2 as cp
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)


def _message_json(message: ag.InputMessage, index: int) -> dict[str, Any]:
    """One input message as llama-stack JSON; INVALID_ARGUMENT naming it if malformed."""
    field = f"messages[{index}]"
    kind = message.WhichOneof("message")
    if kind == "tool":
        if not message.tool.call_id:
            raise InvalidArgumentError(f"{field}.call_id is required", field=f"{field}.call_id")
        return {
            "role": "tool",
            "call_id": message.tool.call_id,
            "content": json_format.MessageToDict(message.tool.content),
        }
    if kind != "user":
        raise InvalidArgumentError(
            f"{field}: a message needs a role, 'user' or 'tool'", field=f"{field}.role"
        )
    if not message.user.HasField("content"):
        raise InvalidArgumentError(f"{field}.content is required", field=f"{field}.content")
    out: dict[str, Any] = {
        "role": "user",
        "content": _text(message.user.content, f"{field}.content"),
    }
    if not "".join(_texts(out["content"])).strip():
        raise InvalidArgumentError(
            f"{field}.content is empty: a user's message says something",
            field=f"{field}.content",
        )
    if message.user.HasField("context"):
        out["context"] = _text(message.user.context, f"{field}.context")
    return out


def _text(value: struct_pb2.Value, field: str) -> Any:
    """A user message's content as JSON: text, a text item (`{"type": "text", "text":
    ...}`) or a list of them. Anything else reached the model as its JSON, an image
    included, as if the user had typed it."""
    content = to_python(value)
    items = content if isinstance(content, list) else [content]
    for index, item in enumerate(items):
        where = f"{field}[{index}]" if isinstance(content, list) else field
        if (isinstance(item, str) and item is content) or (
            isinstance(item, dict)
            and item.get("type") == "text"
            and isinstance(item.get("text"), str)
        ):
            continue
        if isinstance(item, dict) and item.get("type") == "image":
            raise UnimplementedError(f"{where}: images are not supported: send text")
        raise InvalidArgumentError(
            f"{where}: content is text, a text item ({{'type': 'text', 'text': ...}}) or a "
            f"list of them, not {json.dumps(item)[:80]}",
            field=where,
        )
    return content


def _texts(content: Any) -> list[str]:
    items = content if isinstance(content, list) else [content]
    return [item if isinstance(item, str) else item["text"] for item in items]


def _failure(task: resources_pb2.Task) -> Exception:
    """The error a turn that did not complete ends its stream (or call) with."""
    code = status_code(task.error) if task.HasField("error") else None
    if code is None or code.name == "OK":
        return FailedPreconditionError(error_message(task))
    return error_for_code(code, error_message(task))


# What a turn that cannot be resumed is doing, as ResumeTurn's refusal says it (a turn
# waiting for something other than client tools' responses gets the default).
_NOT_AWAITING = {
    resources_pb2.TASK_STATE_PENDING: "it has not started yet",
    resources_pb2.TASK_STATE_RUNNING: "it is still running",
    resources_pb2.TASK_STATE_SUCCEEDED: "it has completed",
    resources_pb2.TASK_STATE_FAILED: "it has failed",
    resources_pb2.TASK_STATE_CANCELLED: "it was cancelled",
}


class Turns:
    """Create, stream, resume and read turns and their steps."""

    def __init__(
        self,
        state: MeshState,
        sessions: AgentSessions,
        tasks: Tasks,
        shutting_down: asyncio.Event,
        live: LiveEvents,
    ) -> None:
        self.state = state
        self.sessions = sessions
        self.tasks = tasks
        self.shutting_down = shutting_down
        self.live = live

    # -- creating -------------------------------------------------------------------

    async def _turn_input(
        self, target: AgentTarget, request: ag.CreateTurnRequest
    ) -> dict[str, Any]:
        if not request.messages:
            raise InvalidArgumentError(
                "messages: a turn needs at least one message", field="messages"
            )
        if request.documents:
            raise UnimplementedError("documents are not supported: send their text in a message")
        messages = [_message_json(m, i) for i, m in enumerate(request.messages)]
        toolgroups = agent_config.turn_toolgroup_names(request.toolgroups)
        if not target.created:
            if toolgroups or request.HasField("tool_config"):
                raise InvalidArgumentError(
                    f"agent {target.agent.agent_id!r} is deployed with its own tools: a turn "
                    "cannot add toolgroups or a tool_config",
                    field="toolgroups" if toolgroups else "tool_config",
                )
            last = messages[-1]
            if len(messages) != 1 or last["role"] != "user" or not isinstance(last["content"], str):
                raise InvalidArgumentError(
                    f"agent {target.agent.agent_id!r} is deployed as a service: a turn sends it "
                    "one user message with text content",
                    field="messages",
                )
            return {"user_msg": last["content"]}
        await self.sessions.agents.check_services(toolgroups, "toolgroups")
        agent_config.check_tool_config(request.tool_config, "tool_config")
        choice = request.tool_config.tool_choice
        tools = [t.name for t in target.agent.agent_config.client_tools]
        if choice and choice not in agent_config.TOOL_CHOICES and choice not in tools:
            # As the agent's own is checked: a model told to call no such tool refuses.
            raise InvalidArgumentError(
                f"tool_config.tool_choice: {choice!r} is not 'auto', 'required', 'none' or "
                f"the name of a client tool of the agent ({tools})",
                field="tool_config.tool_choice",
            )
        turn = TurnInput(
            agent_id=target.agent.agent_id,
            agent_config=json_format.MessageToDict(
                target.agent.agent_config, preserving_proto_field_name=True
            ),
            messages=messages,
            toolgroups=toolgroups,
            tool_choice=(
                request.tool_config.tool_choice
                if request.tool_config.HasField("tool_choice")
                else None
            ),
        )
        return turn.model_dump(mode="json", exclude_defaults=True)

    async def _create(self, request: ag.CreateTurnRequest, task_id: str) -> resources_pb2.Task:
        target, found = await self.sessions.find_record(request.agent_id, request.session_id)
        task_input = await self._turn_input(target, request)
        tasks = self.tasks
        task = await create_task(
            tasks.state,
            tasks.registry,
            tasks.sessions,
            found[0].name,
            resources_pb2.Task(
                service=target.service, input=to_struct(task_input, "the turn's input")
            ),
            "",
            task_id=task_id,
            session_found=found,  # read just now: not read again
        )
        logger.info("turn %s of agent %s created", task.name, request.agent_id)
        return task

    async def stream(self, request: ag.CreateTurnRequest) -> AsyncIterator[ag.TurnEventPayload]:
        """The turn's events: `turn_start`, its steps, and `turn_complete` or
        `turn_awaiting_input`."""
        task_id = new_task_id()
        # Followed from before the task exists: its events need no read of the stream.
        async with self.events(task_id, history=False) as events:
            task = await self._create(request, task_id)
            view = TurnView(task)
            yield ag.TurnEventPayload(turn_start=ag.TurnStartPayload(turn_id=view.turn_id))
            async for payload in self._follow(view, events):
                yield payload

    async def create(self, request: ag.CreateTurnRequest) -> ag.Turn:
        """The turn, once it completed or waits for client tools."""
        task_id = new_task_id()
        async with self.events(task_id, history=False) as events:
            view = TurnView(await self._create(request, task_id))
            async for _ in self._follow(view, events):
                pass
        return view.turn()

    # -- following a turn's events --------------------------------------------------

    @contextlib.asynccontextmanager
    async def events(
        self, task_id: str, *, history: bool
    ) -> AsyncIterator[AsyncIterator[StoredEvent]]:
        """The task's events in order, as they are stored (from its first: enter this
        before the task is created, or with `history`); UNAVAILABLE once the server
        shuts down (the caller calls again on another replica)."""
        async with (
            self.live.follow(task_id, history=history, stop=self.shutting_down) as events,
            contextlib.aclosing(_until_shutdown(events)) as until_shutdown,
        ):
            yield until_shutdown

    async def _follow(
        self,
        view: TurnView,
        events: AsyncIterator[StoredEvent],
        *,
        resume: ae.ClientToolResponses | None = None,
    ) -> AsyncIterator[ag.TurnEventPayload]:
        """Fold the turn's events into `view`, yielding their payloads, until the turn
        completes or waits for client tools. With `resume`, the events until the wait
        are folded silently, then the responses are sent and what follows is yielded."""
        silent = resume is not None
        async for stored in events:
            event = resources_pb2.Envelope.FromString(stored.data).task_event
            event.sequence = stored.seq
            payloads = view.feed(event)
            if silent:
                if stored.newest and view.awaiting_input:
                    silent = False
                    assert resume is not None
                    await self._send(view, resume)
                continue
            for payload in payloads:
                yield payload
            if view.final is not None:
                if not view.result:
                    raise _failure(await self.task_of(view))
                return
            if view.awaiting_input and stored.newest:
                return

    async def task_of(self, view: TurnView) -> resources_pb2.Task:
        name = TaskName(view.session_id, view.turn_id)
        return await self.state.tasks.get(task_key(name), str(name))

    async def _send(self, view: TurnView, responses: ae.ClientToolResponses) -> None:
        await self.tasks.send_task_event(
            cp.SendTaskEventRequest(
                name=str(TaskName(view.session_id, view.turn_id)),
                type=ae.ClientToolResponses.TYPE,
                payload=to_struct(responses.model_dump(mode="json"), "tool_responses"),
            )
        )

    # -- reading --------------------------------------------------------------------

    async def turn_task(self, agent_id: str, session_id: str, turn_id: str) -> resources_pb2.Task:
        target, session = await self.sessions.find(agent_id, session_id)
        check_id("turn", turn_id)
        name = TaskName(session.name.partition("/")[2], turn_id)
        found = await self.state.tasks.find(task_key(name))
        if found is None or found[0].service != target.service or found[0].parent_task:
            raise not_found("turn", turn_id)
        return found[0]

    async def fold(self, task: resources_pb2.Task) -> TurnView:
        """The turn as far as its events go now."""
        view = TurnView(task)
        for event in await events_so_far(self.state.js, self.state.topology, view.turn_id):
            view.feed(event)
        return view

    async def get(self, request: ag.GetTurnRequest) -> ag.Turn:
        task = await self.turn_task(request.agent_id, request.session_id, request.turn_id)
        return (await self.fold(task)).turn()

    async def get_step(self, request: ag.GetStepRequest) -> ag.Step:
        task = await self.turn_task(request.agent_id, request.session_id, request.turn_id)
        step = (await self.fold(task)).step(request.step_id)
        if step is None:
            raise not_found("step", request.step_id)
        return step

    async def of_session(
        self, target: AgentTarget, session: resources_pb2.Session, turn_ids: list[str]
    ) -> list[ag.Turn]:
        """The session's turns, oldest first (only `turn_ids`, when given)."""
        session_id = session.name.partition("/")[2]
        tasks = [
            t
            for _, t in await self.state.tasks.scan(f"{session_id}.*")
            if t.service == target.service and not t.parent_task
        ]
        wanted = set(turn_ids)
        tasks = [t for t in tasks if not wanted or t.name.rpartition("/")[2] in wanted]
        tasks.sort(key=lambda t: t.create_sequence)  # creation order (the CREATED stream's)
        return [(await self.fold(t)).turn() for t in tasks]

    # -- resuming -------------------------------------------------------------------

    async def _resumable(
        self, request: ag.ResumeTurnRequest
    ) -> tuple[TurnView, ae.ClientToolResponses]:
        task = await self.turn_task(request.agent_id, request.session_id, request.turn_id)
        if task.state != WAITING or task.input_request.event_type != ae.AwaitingClientTools.TYPE:
            now = _NOT_AWAITING.get(task.state, "it waits for another kind of input")
            raise FailedPreconditionError(
                f"turn {request.turn_id!r} is not awaiting tool responses: {now}; only a "
                "turn that ended with turn_awaiting_input can be resumed"
            )
        awaited = ae.AwaitingClientTools.model_validate(to_python(task.input_request.payload))
        expected = {c.call_id for c in awaited.tool_calls}
        given = [r.call_id for r in request.tool_responses]
        unknown = sorted(set(given) - expected)
        missing = sorted(expected - set(given))
        if unknown or missing or len(given) != len(set(given)):
            raise InvalidArgumentError(
                "tool_responses: give one response per call the turn waits for "
                f"({sorted(expected)}); "
                + (f"unknown {unknown}; " if unknown else "")
                + (f"missing {missing}" if missing else "responses repeated"),
                field="tool_responses",
            )
        responses = ae.ClientToolResponses(
            tool_responses=[
                ae.ClientToolResponse(
                    call_id=r.call_id,
                    tool_name=r.tool_name,
                    content=json_format.MessageToDict(r.content),
                )
                for r in request.tool_responses
            ]
        )
        return TurnView(task), responses

    async def resume_stream(
        self, request: ag.ResumeTurnRequest
    ) -> AsyncIterator[ag.TurnEventPayload]:
        """Send the tool responses; the turn's events after them."""
        view, responses = await self._resumable(request)
        async with self.events(view.turn_id, history=True) as events:
            async for payload in self._follow(view, events, resume=responses):
                yield payload

    async def resume(self, request: ag.ResumeTurnRequest) -> ag.Turn:
        view, responses = await self._resumable(request)
        async with self.events(view.turn_id, history=True) as events:
            async for _ in self._follow(view, events, resume=responses):
                pass
        return view.turn()


async def _until_shutdown(events: AsyncIterator[StoredEvent]) -> AsyncGenerator[StoredEvent]:
    async for event in events:
        yield event
    raise UnavailableError("the control plane is shutting down; resume the stream")


__all__ = ["FAILED", "Turns"]
