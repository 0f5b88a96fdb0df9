"""The services of bench/agent_tools_bench.py, served by `llama-mesh serve service` children
(PYTHONPATH=bench): a tool service, the loop that calls its tool, a human service and
an agent that asks it (on the scripted model at $SCRIPTED_MODEL_URL).

No `from __future__ import annotations`: llama-index reads the tool's annotations.
"""

import os
import time

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai_like import OpenAILike
from workflows import Workflow, step
from workflows.events import StartEvent, StopEvent

from llama_mesh.worker.human_service import HumanService
from llama_mesh.worker.mesh_tools import MeshTools
from llama_mesh.worker.tool_service import ToolService


def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


tools = ToolService([add])
human = HumanService(prompt="{input_str}", description="Ask a person.")


class ToolCallLoop(Workflow):
    """Calls `add` `n` times in-process, then `n` times through the mesh (the tool
    service `tools_service`), sequentially; returns each call's time in ns."""

    @step
    async def loop(self, ev: StartEvent) -> StopEvent:
        n = int(ev.get("n", 200))
        warmup = int(ev.get("warmup", 20))
        local = FunctionTool.from_defaults(add)
        [remote] = await MeshTools(str(ev.get("tools_service", "tools"))).aretrieve("")
        timings: dict[str, list[int]] = {"in_process": [], "mesh": []}
        for name, tool in (("in_process", local), ("mesh", remote)):
            for i in range(warmup + n):
                started = time.perf_counter_ns()
                output = await tool.acall(a=i, b=1)
                elapsed = time.perf_counter_ns() - started
                if output.is_error or output.raw_output != i + 1:
                    raise RuntimeError(f"{name} call {i} returned {output.content!r}")
                if i >= warmup:
                    timings[name].append(elapsed)
        return StopEvent(result=timings)


def asker() -> FunctionAgent:
    """An agent that asks a person (the human service, as a tool) and reports."""
    llm = OpenAILike(
        model="scripted",
        api_base=os.environ["SCRIPTED_MODEL_URL"],
        api_key="none",
        is_chat_model=True,
        is_function_calling_model=True,
        max_retries=0,
        timeout=600,
    )
    return FunctionAgent(
        name="asker",
        description="Asks a person.",
        tool_retriever=MeshTools("human"),
        llm=llm,
        system_prompt="Ask the human when you need to.",
    )
