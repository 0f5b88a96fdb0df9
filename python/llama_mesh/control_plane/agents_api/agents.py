"""Agents: those created by the Agents API, and those deployed as services.

A created agent is an ``Agent`` record in the `agents` bucket; its turns run on the
built-in agent service (``AGENTS_SERVICE``), which builds the llama-index agent from
the configuration each turn carries. An agent deployed as a service (kind AGENT) is
an agent of this API too, its id the service's name; its turns run on its service.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import TypeVar

from llama_mesh.control_plane.agents_api.agent_cache import AgentCache
from llama_mesh.control_plane.registry import ServiceRegistry
from llama_mesh.core import agent_config, proto_time
from llama_mesh.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from llama_mesh.core.names import AGENTS_SERVICE, SERVICE_ID
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.v1 import agents_pb2, resources_pb2

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Ids the API hands out (UUIDs) or accepts (service names): anything else cannot
# exist, so it is not found (and never reaches a KV key).
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def not_found(kind: str, ident: str, reason: str = "") -> NotFoundError:
    return NotFoundError(f"{kind} {ident!r} not found", reason=reason)


def check_id(kind: str, ident: str, reason: str = "") -> str:
    """`ident`, or NOT_FOUND (with `reason`, as for an id that could be) if it cannot be
    the id of anything."""
    if not ID.fullmatch(ident):
        raise not_found(kind, ident, reason)
    return ident


def new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class AgentTarget:
    """An agent and where its turns run."""

    agent: agents_pb2.Agent
    service: str  # the service that runs its turns
    created: bool  # created by the API (runs on the built-in agent service)


def _deployed(service: resources_pb2.Service) -> agents_pb2.Agent:
    """An agent deployed as a service, as the API shows it."""
    service_id = service.name.removeprefix("services/")
    config = agents_pb2.AgentConfig(model="", instructions=service.description, name=service_id)
    agent = agents_pb2.Agent(agent_id=service_id, agent_config=config)
    agent.created_at.CopyFrom(service.create_time)
    return agent


def is_agent_service(service: resources_pb2.Service) -> bool:
    """A service that is an agent of this API (not the built-in agent service)."""
    return service.kind == resources_pb2.SERVICE_KIND_AGENT and not service.models


class Agents:
    """Create, get, list and delete agents."""

    def __init__(
        self, state: MeshState, registry: ServiceRegistry, cache: AgentCache | None = None
    ) -> None:
        self.state = state
        self.registry = registry
        # A control plane's (server.py): without one, every lookup reads the store.
        self.cache = cache

    async def models(self) -> list[str]:
        """The models the built-in agent service runs agents on."""
        try:
            service = await self.registry.lookup(AGENTS_SERVICE)
        except NotFoundError:
            raise FailedPreconditionError(
                f"no built-in agent service ({AGENTS_SERVICE!r}) is deployed: give the "
                "deployment `models:` so that agents can be created"
            ) from None
        return list(service.models)

    async def check_model(self, model: str, field: str) -> None:
        models = await self.models()
        if model not in models:
            raise InvalidArgumentError(
                f"{field}: {model!r} is not a model of the deployment (models: {models})",
                field=field,
            )

    async def check_services(self, names: list[str], field: str) -> None:
        """Every name is a registered service (a toolgroup, a shield)."""
        for index, name in enumerate(names):
            try:
                await self.registry.lookup(name)
            except NotFoundError:
                where = f"{field}[{index}]"
                raise InvalidArgumentError(
                    f"{where}: no service {name!r} is deployed in the mesh", field=where
                ) from None

    async def create(
        self, request: agents_pb2.CreateAgentRequest
    ) -> agents_pb2.CreateAgentResponse:
        if not request.HasField("agent_config"):
            raise InvalidArgumentError("agent_config is required", field="agent_config")
        config = request.agent_config
        prefix = agent_config.PREFIX
        agent_config.check(config)
        await self.check_model(config.model, f"{prefix}.model")
        await self.check_services(agent_config.toolgroup_names(config), f"{prefix}.toolgroups")
        await self.check_services(list(config.input_shields), f"{prefix}.input_shields")
        await self.check_services(list(config.output_shields), f"{prefix}.output_shields")
        agent = agents_pb2.Agent(agent_id=new_uuid(), agent_config=config)
        agent.created_at.CopyFrom(proto_time.now())
        await self.state.agents.create(agent.agent_id, agent)
        logger.info("agent %s created (model %s)", agent.agent_id, config.model)
        return agents_pb2.CreateAgentResponse(agent_id=agent.agent_id)

    async def target(self, agent_id: str) -> AgentTarget:
        """The agent and where its turns run; NOT_FOUND if there is none."""
        check_id("agent", agent_id)
        if self.cache is not None:
            agent = await self.cache.find(agent_id)
        else:
            found = await self.state.agents.find(agent_id)
            agent = None if found is None else found[0]
        if agent is not None:
            return AgentTarget(agent, AGENTS_SERVICE, created=True)
        if SERVICE_ID.fullmatch(agent_id):
            try:
                service = await self.registry.lookup(agent_id)
            except NotFoundError:
                pass
            else:
                if is_agent_service(service):
                    return AgentTarget(_deployed(service), agent_id, created=False)
        raise not_found("agent", agent_id)

    async def get(self, request: agents_pb2.GetAgentRequest) -> agents_pb2.GetAgentResponse:
        return agents_pb2.GetAgentResponse(agent=(await self.target(request.agent_id)).agent)

    async def list(self, request: agents_pb2.ListAgentsRequest) -> agents_pb2.ListAgentsResponse:
        created = [agent for _, agent in await self.state.agents.scan()]
        deployed = [
            _deployed(s) for _, s in await self.state.services.scan() if is_agent_service(s)
        ]
        agents = sorted(
            [*created, *deployed], key=lambda a: (a.created_at.ToNanoseconds(), a.agent_id)
        )
        page, has_more = window(agents, request)
        return agents_pb2.ListAgentsResponse(data=page, has_more=has_more, url="/v1/agents")

    async def deletable(self, agent_id: str) -> AgentTarget:
        """The agent, if the API may delete it (it created it)."""
        target = await self.target(agent_id)
        if not target.created:
            raise FailedPreconditionError(
                f"agent {agent_id!r} is a deployed service: undeploy the service to remove it"
            )
        return target

    async def delete(self, target: AgentTarget) -> None:
        """Delete a created agent's record (its sessions are the caller's)."""
        await self.state.agents.delete(target.agent.agent_id)
        if self.cache is not None:  # here at once; other control planes as they see it
            self.cache.forget(target.agent.agent_id)
        logger.info("agent %s deleted", target.agent.agent_id)


def window(
    items: list[T], request: agents_pb2.ListAgentsRequest | agents_pb2.ListAgentSessionsRequest
) -> tuple[list[T], bool]:
    """The items from `start_index`, at most `limit` of them, and whether more follow."""
    start = request.start_index if request.HasField("start_index") else 0
    if start < 0:
        raise InvalidArgumentError(
            f"start_index must not be negative (got {start})", field="start_index"
        )
    if request.HasField("limit") and request.limit < 0:
        raise InvalidArgumentError(
            f"limit must not be negative (got {request.limit})", field="limit"
        )
    end = start + request.limit if request.HasField("limit") and request.limit else len(items)
    return items[start:end], end < len(items)
