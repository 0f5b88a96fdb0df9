"""What llama-mesh needs from a Workflow that llama-index-workflows keeps private.

Every use of the library's private attributes is in this module, and
tests/test_workflow_internals.py runs real workflows through each function, so an
upgrade that changes them fails there first, not in a deployed service.

- A workflow's steps and their `@step` configs (which events a step accepts and
  returns, its state type, which resources it declares): `Workflow._get_steps()` and
  `StepFunction._step_config`.
  The public `Workflow.events` lists emitted events too, and
  `workflows.representation` describes events by name only; the runtime needs the
  classes that a step accepts, to build events sent into a running task.
- The cached resource values of one workflow instance, to give a step a stand-in
  for a nested workflow: `Workflow._resource_manager`. A resource manager can be
  passed only to `Workflow.__init__`, and the workflow is built by user code.
- The built-in agent service's ConfiguredAgent (configured_agent.py) overrides
  `Workflow._get_steps()` to look its steps up once per instance, not once per step
  run (tests/agents/test_agent_runner.py counts the lookups).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from workflows import Workflow
from workflows.decorators import StepConfig
from workflows.resource import ResourceDescriptor


@dataclass(frozen=True)
class Step:
    """One step of a workflow: its function and its `@step` config."""

    function: Callable[..., Any]
    config: StepConfig


def steps(workflow: Workflow) -> list[Step]:
    """The steps of `workflow`, methods and free functions added with `add_step`."""
    return [Step(step, step._step_config) for step in workflow._get_steps().values()]


def resource_values(workflow: Workflow) -> dict[str, Any]:
    """The cached resource values of this workflow instance, by descriptor name: a value
    put here is what its steps get for a cached resource of that name."""
    return workflow._resource_manager.resources


def always_cached(resource: ResourceDescriptor) -> None:
    """Make steps read `resource` from `resource_values` instead of calling its factory.

    The descriptor is shared by every instance of the workflow class; its factory
    still runs for instances that hold no value under its name.
    """
    cast(Any, resource).cache = True
