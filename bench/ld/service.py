"""deploy_workflow of one bench workflow, as in the llama_deploy README (its venv only).

python bench/ld/service.py echo EchoWorkflow --port P --control-plane-port C
"""

from __future__ import annotations

import argparse
import asyncio

import ld_workflows
from llama_deploy import ControlPlaneConfig, WorkflowServiceConfig, deploy_workflow
from llama_index.core.workflow import Workflow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("workflow", help="a Workflow class or factory in bench/ld/ld_workflows.py")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-plane-port", type=int, required=True)
    args = parser.parse_args()
    target = getattr(ld_workflows, args.workflow)
    workflow = target() if not isinstance(target, Workflow) else target
    asyncio.run(
        deploy_workflow(
            workflow=workflow,
            workflow_config=WorkflowServiceConfig(
                host="127.0.0.1", port=args.port, service_name=args.name
            ),
            control_plane_config=ControlPlaneConfig(host="127.0.0.1", port=args.control_plane_port),
        )
    )


if __name__ == "__main__":
    main()
