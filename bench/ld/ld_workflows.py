"""The bench's workflows for llama_deploy 0.8.1 (imported in its own venv only).

EchoWorkflow, InnerWorkflow and OuterReadmeWorkflow are the llama_deploy README's, as
written there. OuterWorkflow is the workaround the bench deploys for the nested leg:
in 0.8.1 the README's `inner: InnerWorkflow` step injection fails inside the service
(NetworkServiceManager.get calls the sync client from the event loop: "You cannot use
the sync client within an async event loop"), so the outer step awaits llama_deploy's
own NetworkWorkflow for the deployed "inner" service instead, as a user would.
"""

from __future__ import annotations

from llama_deploy.deploy.network_workflow import NetworkWorkflow
from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step


class EchoWorkflow(Workflow):
    @step()
    async def run_step(self, ev: StartEvent) -> StopEvent:
        arg1 = str(ev.get("arg1", ""))
        return StopEvent(result=arg1 + "_result")


class InnerWorkflow(Workflow):
    @step()
    async def run_step(self, ev: StartEvent) -> StopEvent:
        arg1 = ev.get("arg1")
        if not arg1:
            raise ValueError("arg1 is required.")
        return StopEvent(result=str(arg1) + "_result")


class OuterReadmeWorkflow(Workflow):
    """The README's outer workflow: the inner one is injected into the step."""

    @step()
    async def run_step(self, ev: StartEvent, inner: InnerWorkflow) -> StopEvent:
        arg1 = ev.get("arg1")
        if not arg1:
            raise ValueError("arg1 is required.")
        arg1 = await inner.run(arg1=arg1)
        return StopEvent(result=str(arg1) + "_result")


def outer_readme() -> Workflow:
    outer = OuterReadmeWorkflow()
    outer.add_workflows(inner=InnerWorkflow())
    return outer


class OuterWorkflow(Workflow):
    """The workaround: call the deployed "inner" service through NetworkWorkflow."""

    @step()
    async def run_step(self, ev: StartEvent) -> StopEvent:
        arg1 = ev.get("arg1")
        if not arg1:
            raise ValueError("arg1 is required.")
        # The client inside reads LLAMA_DEPLOY_CONTROL_PLANE_URL (set by the bench).
        arg1 = await NetworkWorkflow("inner", timeout=None).run(arg1=arg1)
        return StopEvent(result=str(arg1) + "_result")
