"""Nested workflows: a step that awaits another workflow runs it through the mesh.

A step declares the inner workflow as a resource, either the workflows-2.x way:

    async def step(self, ev: StartEvent,
                   inner: Annotated[InnerWorkflow, Resource(InnerWorkflow)]) -> StopEvent:
        result = await inner.run(arg1=ev.get("arg1"))

or the llama_deploy / llama-index 0.11 way, a plain parameter filled by
``add_workflows(outer, inner=InnerWorkflow())``. In a notebook the inner workflow runs
in-process. Served by llama-mesh, the runtime replaces it with a RemoteWorkflow that
runs the *deployed service named after the parameter* ("inner") as a child task in
the same session, with the parent's remaining deadline; cancelling the parent
cancels the child, and the child's failure raises TaskFailedError in the parent.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from workflows import Workflow
from workflows.resource import Resource, ResourceDefinition

from llama_mesh.worker.child_tasks import call_service
from llama_mesh.worker.workflow_internals import always_cached, resource_values, steps


def _missing(name: str) -> Any:
    def factory() -> Any:
        raise LookupError(f"workflow resource {name!r} is not set: call add_workflows first")

    factory.__qualname__ = f"llama_mesh.nested.{name}"
    return factory


def workflow_resources(workflow: Workflow) -> Iterator[ResourceDefinition]:
    """The step resources of `workflow` that are workflows themselves."""
    for step in steps(workflow):
        for definition in step.config.resources:
            kind = definition.type_annotation
            if inspect.isclass(kind) and issubclass(kind, Workflow):
                yield definition


def add_workflows(workflow: Workflow, **workflows: Workflow) -> Workflow:
    """Give `workflow`'s steps the workflows they take as plain parameters.

    The llama_deploy README's nested example, unchanged but for the call:

        outer = OuterWorkflow()
        add_workflows(outer, inner=InnerWorkflow())   # was: outer.add_workflows(...)
    """
    for step in steps(workflow):
        parameters = inspect.signature(step.function).parameters
        declared = {d.name for d in step.config.resources}
        for name, value in workflows.items():
            if name not in parameters or name in declared:
                continue
            annotation = parameters[name].annotation
            kind = annotation if inspect.isclass(annotation) else type(value)
            step.config.resources.append(
                ResourceDefinition(
                    name=name, resource=Resource(_missing(name)), type_annotation=kind
                )
            )
    values = resource_values(workflow)
    for definition in workflow_resources(workflow):
        if definition.name in workflows:
            values[definition.resource.name] = workflows[definition.name]
    return workflow


class RemoteWorkflow:
    """Stands in for a nested workflow: `await inner.run(**kwargs)` runs the
    deployed service as a child task of the running task."""

    def __init__(self, service: str) -> None:
        self.service = service

    def __repr__(self) -> str:
        return f"<RemoteWorkflow service={self.service!r}>"

    async def run(self, **kwargs: Any) -> Any:
        return await call_service(self.service, kwargs)


def use_mesh_for_nested(workflow: Workflow) -> list[str]:
    """Replace each workflow resource of `workflow` with a RemoteWorkflow; the names."""
    services = []
    values = resource_values(workflow)
    for definition in workflow_resources(workflow):
        values[definition.resource.name] = RemoteWorkflow(definition.name)
        # A cached resource is looked up by name, so the proxy is what steps get.
        always_cached(definition.resource)
        services.append(definition.name)
    return services
