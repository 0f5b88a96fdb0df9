"""The llama-agents README example on llama-mesh, with only llama-index's own changes:
two agents as services, and an agentic orchestrator that routes the question.

    .venv/bin/python examples/agents/secret_fact.py      # needs a model: see model.py
"""

import asyncio

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.tools import FunctionTool
from model import model

from llama_mesh import LocalMesh, ServiceConfig
from llama_mesh.orchestrators import AgenticOrchestrator


# create an agent
def get_the_secret_fact() -> str:
    """Returns the secret fact."""
    return "The secret fact is: A baby llama is called a 'Cria'."


tool = FunctionTool.from_defaults(fn=get_the_secret_fact)

# llama-index 0.14: FunctionAgent(tools=..., llm=...) replaced ReActAgent.from_tools(...)
agent1 = FunctionAgent(tools=[tool], llm=model())
agent2 = FunctionAgent(tools=[], llm=model())


async def main() -> None:
    # The agents as services, and the orchestrator that routes a task naming none.
    services = {
        "secret_fact_agent": (
            agent1,
            ServiceConfig("secret_fact_agent", description="Useful for getting the secret fact."),
        ),
        "dumb_fact_agent": (
            agent2,
            ServiceConfig("dumb_fact_agent", description="Useful for getting random dumb facts."),
        ),
    }
    async with LocalMesh(services, orchestrator=AgenticOrchestrator(llm=model())) as mesh:
        result = await mesh.client.run("What is the secret fact?")
        print(f"Result: {result}")


if __name__ == "__main__":
    asyncio.run(main())
