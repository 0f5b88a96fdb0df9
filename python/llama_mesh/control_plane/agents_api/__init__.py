"""The Agents API and the Responses API, served by the control plane.

Views over sessions and tasks (DESIGN.md): an agent's session is a mesh session, a
turn or a response is a task of the agent's service, and steps, turns and response
output are derived from the task's event stream (turn_view.py, response_view.py).

    agents.py           agents: created (stored in the `agents` bucket) or deployed
    sessions.py         sessions of an agent (mesh sessions labelled with the agent)
    turns.py            turns: create, stream, resume, get; steps
    turn_view.py        TaskEvents -> llama-stack turn events and Turn (pure)
    responses.py        the Responses API
    response_view.py    TaskEvents -> OpenAI response output and stream events (pure)
    servicer.py         the two gRPC servicers
"""
