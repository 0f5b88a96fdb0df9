"""The Agents API and the Responses API, served by the control plane.

Views over sessions and tasks (DESIGN.md): an agent's session is a mesh session, a
turn or a response is a task of the agent's service, and steps, turns and response
output are derived from the task's event stream (turn_view.py, responses.py).

    agents.py           agents: created (stored in the `agents` bucket) or deployed
    sessions.py         sessions of an agent (mesh sessions labelled with the agent)
    turns.py            turns: create, stream, resume, get; steps
    turn_view.py        TaskEvents -> llama-stack turn events and Turn (pure)
    fork.py             a session forked at a turn
    responses.py        the Responses API: create, stream, get, list, delete
    response_request.py a request's sampling, function tools, response object (pure)
    response_items.py   input and output items, the conversation the model reads (pure)
    response_pages.py   pages of the responses and of a response's input items (pure)
    servicer.py         the two gRPC servicers
"""
