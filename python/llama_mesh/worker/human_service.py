"""Human services: a service whose tasks a person answers. No workflow code to write.

    reviewer = HumanService(prompt="Please review this draft:\\n\\n{input_str}")
    async with LocalMesh({"reviewer": reviewer}) as mesh: ...

A task's input is ``{"question": ...}``: what to ask (text, or any JSON, shown as
JSON). The task waits (WAITING_FOR_INPUT) with the prompt, the template filled with
``{input_str}``, in its ``input_request`` (``{"prefix": PROMPT, "question": ...}``), so it
shows in every inbox (``llama-mesh inbox``, ``client.inbox()``, ListTasks across
sessions). Whoever answers sends a ``HumanResponseEvent`` with ``response`` through any
surface (``llama-mesh answer TASK TEXT``, REST, gRPC, Python); the response is the
task's result.

It is the human-in-the-loop path every workflow has, so it is as durable: the question
is in the task record, the answer in the event stream, and a restarted replica (or a
restarted mesh) neither asks again nor loses an answer (task_inputs.py). A timeout
(``ServiceConfig.timeout``, or ``timeout:`` in the deployment file) fails an unanswered
task with DEADLINE_EXCEEDED, also when the task is another task's child.
"""

from __future__ import annotations

import json
from typing import Any

from workflows import Context, Workflow, step
from workflows.events import HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent

from llama_mesh.core.prompt_template import check_prompt
from llama_mesh.v1 import resources_pb2

DEFAULT_PROMPT = "A task needs your answer:\n\n{input_str}\n"
DEFAULT_DESCRIPTION = (
    "Asks a person and returns their answer. Use it when a decision or a fact needs a human."
)


class HumanRequest(StartEvent):
    """The input of a human service's task."""

    question: Any


class HumanService(Workflow):
    """A service whose tasks a person answers."""

    mesh_service_kind = resources_pb2.SERVICE_KIND_HUMAN

    def __init__(self, prompt: str = DEFAULT_PROMPT, *, description: str = "") -> None:
        # A person may take days: no workflow timeout (the task's deadline applies).
        super().__init__(timeout=None)
        self.prompt = check_prompt(prompt)
        self.description = description or DEFAULT_DESCRIPTION

    def mesh_input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "question": {
                    "type": "string",
                    "description": "What to ask the person.",
                }
            },
            "required": ["question"],
        }

    def render(self, value: Any) -> str:
        """The prompt a person sees for the input `value`."""
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return self.prompt.format(input_str=text)

    @step
    async def ask(self, ctx: Context, ev: HumanRequest) -> StopEvent:
        # InputRequiredEvent's fields are free-form (its stream payload is this dict).
        fields: dict[str, Any] = {"prefix": self.render(ev.question), "question": ev.question}
        question = InputRequiredEvent(**fields)
        answer = await ctx.wait_for_event(HumanResponseEvent, waiter_event=question, timeout=None)
        return StopEvent(result=answer.response)
