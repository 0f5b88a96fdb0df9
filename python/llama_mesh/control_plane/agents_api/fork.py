"""Forking an agent session at a turn: a new session whose conversation is the
original's up to and including that turn.

The conversation is rebuilt from the turns themselves (their input messages and
steps, derived from their tasks' events: the one source of truth), not cut out of the
original's saved conversation, which has moved on. It becomes the new session's saved
conversation (the Context of the agent service's record in `session_state`, as a replica
commits it: ``{"chat_history": [...]}`` of llama-index ChatMessage JSON), so its next
turn continues from there. The original session is only read.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from google.protobuf import json_format

from llama_mesh.control_plane.agents_api.agents import not_found
from llama_mesh.control_plane.agents_api.sessions import (
    FORKED_FROM_LABEL,
    NAME_LABEL,
    AgentSessions,
)
from llama_mesh.control_plane.agents_api.turns import Turns
from llama_mesh.core import proto_time
from llama_mesh.core.errors import FailedPreconditionError
from llama_mesh.core.lifecycle import SUCCEEDED
from llama_mesh.jetstream.session_turn import SessionTurns
from llama_mesh.v1 import agents_pb2 as ag
from llama_mesh.v1 import resources_pb2

logger = logging.getLogger(__name__)


def _text(value: Any) -> str:
    """A message's content as the model read it."""
    content = json_format.MessageToDict(value) if not isinstance(value, str) else value
    if isinstance(content, str):
        return content
    if isinstance(content, dict) and content.get("type") == "text":
        return str(content.get("text", ""))
    if isinstance(content, list):
        return "".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return json.dumps(content)


def turn_messages(turn: ag.Turn) -> list[dict[str, Any]]:
    """The chat messages a completed turn added to the conversation, in order."""
    out: list[dict[str, Any]] = []
    for message in turn.input_messages:
        if message.HasField("tool"):
            out.append(
                {
                    "role": "tool",
                    "content": _text(message.tool.content),
                    "additional_kwargs": {"tool_call_id": message.tool.call_id},
                }
            )
        else:
            text = _text(message.user.content)
            if message.user.HasField("context"):
                text = f"{text}\n\n{_text(message.user.context)}"
            out.append({"role": "user", "content": text})
    last_answer = None
    for step in turn.steps:
        if step.HasField("inference"):
            response = step.inference.model_response
            last_answer = _text(response.content)
            said: dict[str, Any] = {"role": "assistant", "content": last_answer}
            if response.tool_calls:
                said["additional_kwargs"] = {
                    "tool_calls": [
                        {
                            "id": c.call_id,
                            "type": "function",
                            "function": {"name": c.tool_name, "arguments": c.arguments_json},
                        }
                        for c in response.tool_calls
                    ]
                }
                last_answer = None
            out.append(said)
        elif step.HasField("tool_execution"):
            out += [
                {
                    "role": "tool",
                    "content": _text(r.content),
                    "additional_kwargs": {"tool_call_id": r.call_id},
                }
                for r in step.tool_execution.tool_responses
            ]
    final = _text(turn.output_message.content)
    if final != last_answer:  # e.g. a shield's refusal, which no inference step said
        out.append({"role": "assistant", "content": final})
    return out


async def fork_session(
    sessions: AgentSessions, turns: Turns, request: ag.ForkAgentSessionRequest
) -> ag.ForkAgentSessionResponse:
    target, session = await sessions.find(request.agent_id, request.session_id)
    task = await turns.turn_task(request.agent_id, request.session_id, request.turn_id)
    if task.state != SUCCEEDED:
        state = resources_pb2.TaskState.Name(task.state).removeprefix("TASK_STATE_").lower()
        raise FailedPreconditionError(
            f"turn {request.turn_id!r} has not completed (it is {state}): fork at a completed turn"
        )
    history: list[dict[str, Any]] = []
    for turn in await turns.of_session(target, session, []):
        history += turn_messages(turn)
        if turn.turn_id == request.turn_id:
            break
    else:  # listed a moment ago: deleted since
        raise not_found("turn", request.turn_id)
    name = (
        request.session_name
        if request.HasField("session_name")
        else f"{session.labels.get(NAME_LABEL, '')} (fork)"
    )
    forked = await sessions.create(
        target, name, {FORKED_FROM_LABEL: f"{request.session_id}/{request.turn_id}"}
    )
    forked_id = forked.name.partition("/")[2]
    await SessionTurns(sessions.state, target.service).seed(
        forked_id, {"chat_history": history}, proto_time.seconds(forked.ttl)
    )
    logger.info(
        "session %s forked from %s at turn %s", forked_id, request.session_id, request.turn_id
    )
    return ag.ForkAgentSessionResponse(session_id=forked_id)
