"""The service runtime: serves any Workflow as a named service of the mesh.

One runtime for every kind of service. Per replica it

- registers with the control plane over gRPC and renews its lease (registration.py);
- takes tasks from the durable consumer shared by all replicas of the service, at
  most ``max_concurrency`` at once (PullConsumer), and runs each as an attempt
  (attempt.py): what a delivery and an attempt's outcome lead to (run, retry with
  backoff, fail with a typed google.rpc.Status and a dead letter, deadline, cancel)
  is decided by core/attempt_policy.py alone;
- knows its running attempts by task, to stop one when the control plane signals its
  cancel (running_attempts.py);
- serves the Service API (describe, pause/resume, drain, running tasks).

    async with ServiceRuntime.start(EchoWorkflow(), ServiceConfig("echo"), "127.0.0.1:50051"):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import json_format, struct_pb2
from nats.aio.msg import Msg
from workflows import Workflow

from llama_mesh.client import AsyncClient, Credentials
from llama_mesh.client._async import CHANNEL_OPTIONS
from llama_mesh.config import ServiceConfig
from llama_mesh.core import proto_time
from llama_mesh.core.errors import FailedPreconditionError, UnavailableError
from llama_mesh.core.names import new_id, service_name
from llama_mesh.core.tasks import cancel_and_wait
from llama_mesh.jetstream.api_keys import ApiKeyStore
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.pull_consumer import PullConsumer
from llama_mesh.jetstream.service_consumer import bind_service_consumer
from llama_mesh.jetstream.session_turn import SessionTurns
from llama_mesh.jetstream.topology import Topology
from llama_mesh.rpc.metrics_access import metrics_access
from llama_mesh.rpc.security import NO_AUTH, SecurityConfig, server_security
from llama_mesh.rpc.server import serve
from llama_mesh.telemetry import tracing
from llama_mesh.telemetry.metrics_endpoint import serve_metrics
from llama_mesh.v1 import (
    auth_pb2,
    control_plane_pb2_grpc,
    resources_pb2,
    service_pb2,
    service_pb2_grpc,
)
from llama_mesh.worker import task_spans
from llama_mesh.worker.agent_runner import runner_for
from llama_mesh.worker.attempt import Worker
from llama_mesh.worker.child_tasks import ChildCaller
from llama_mesh.worker.nested import use_mesh_for_nested
from llama_mesh.worker.registration import Registration
from llama_mesh.worker.running_attempts import RunningAttempts
from llama_mesh.worker.service_api import ServiceAPIServicer
from llama_mesh.worker.workflow_runner import WorkflowRunner

logger = logging.getLogger(__name__)

SERVICE_API = service_pb2.DESCRIPTOR.services_by_name["ServiceAPI"].full_name


class ServiceRuntime:
    """One replica of a service."""

    def __init__(
        self,
        workflow: Workflow | WorkflowRunner,
        config: ServiceConfig,
        control_plane: str,
        *,
        replica_id: str | None = None,
    ) -> None:
        self.runner = runner_for(workflow)
        self.config = config
        self.control_plane = control_plane
        self.replica_id = replica_id or new_id()
        self.address = ""
        # http://HOST:PORT/metrics, when the replica serves metrics (config.metrics_port).
        self.metrics_url: str | None = None
        self.paused = False
        self.draining = False
        self.drained = asyncio.Event()
        self._attempts = RunningAttempts()
        self._state: MeshState | None = None
        self._worker: Worker | None = None
        self._consumer: PullConsumer | None = None
        self._registration: Registration | None = None
        self._keys: ApiKeyStore | None = None
        self._draining: asyncio.Task[tuple[int, int]] | None = None

    # ------------------------------------------------------------ lifecycle

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        workflow: Workflow | WorkflowRunner,
        config: ServiceConfig,
        control_plane: str,
        *,
        nats_urls: list[str] | None = None,
        drain_timeout: float = 30.0,
        user_credentials: str | None = None,
        nkeys_seed: str | None = None,
        nats_tls: ssl.SSLContext | None = None,
        credentials: Credentials | None = None,
        security: SecurityConfig = NO_AUTH,
        replica_id: str | None = None,
    ) -> AsyncIterator[ServiceRuntime]:
        """Run the replica for the duration of the block; drain it on exit.

        `credentials` (the service's token, TLS to the control plane) default to the
        environment's (see llama_mesh.client.Credentials); `security` says how its
        own Service API checks callers (against the mesh's API keys). `replica_id`
        is new unless given (`serve` names it first, for its traces' resource).
        The runner (`workflow` if it is one, e.g. the built-in agent service's) is
        closed when the replica stops: give each replica its own.
        """
        runtime = cls(workflow, config, control_plane, replica_id=replica_id)
        creds = credentials or Credentials.from_env()
        if tracing.enabled():
            task_spans.install()  # the workflow's runs and steps as spans
        async with (
            # The runner is the replica's: closed (its model clients) once it has stopped.
            contextlib.aclosing(runtime.runner),
            creds.channel(control_plane, CHANNEL_OPTIONS) as channel,
            AsyncClient(control_plane, credentials=creds) as nested_client,
            server_security(security, runtime._lookup_key) as service_security,
        ):
            # Nested workflows run as child tasks on their deployed services.
            caller = ChildCaller(nested_client, runtime._publish_event)
            nested = use_mesh_for_nested(runtime.runner.workflow)
            if nested:
                logger.info("service %s calls nested services %s", config.name, nested)
            registration = runtime._registration = Registration(
                control_plane_pb2_grpc.ControlPlaneAPIStub(channel),
                control_plane,
                config.name,
                runtime._service,
                runtime.replica,
                config.lease,
                creds.metadata(),
                ack_wait=config.ack_wait,
            )
            servicer = ServiceAPIServicer(runtime)
            async with (
                serve(
                    [(service_pb2_grpc.add_ServiceAPIServicer_to_server, servicer, SERVICE_API)],
                    host=config.host,
                    port=config.port,
                    security=service_security,
                ) as (address, _),
                serve_metrics(
                    config.host,
                    config.metrics_port,
                    metrics_access(service_security, open_metrics=security.open_metrics),
                ) as metrics_url,
            ):
                runtime.address = address
                runtime.metrics_url = metrics_url
                queue = await registration.register()
                urls = nats_urls or list(queue.nats_urls)
                async with (
                    MeshState.connect(
                        urls,
                        Topology(prefix=queue.prefix or "mesh"),
                        name=f"llama-mesh-service-{config.name}",
                        user_credentials=user_credentials,
                        nkeys_seed=nkeys_seed,
                        tls=nats_tls,
                        # The control plane made the streams and buckets; a replica's
                        # NATS user may not (launch/nats_users.py).
                        ensure=False,
                        # It writes no task record or event itself: a control plane
                        # records them, for this service's tasks only.
                        replica_of=config.name,
                    ) as state,
                    ApiKeyStore.open(state.js, state.topology) as keys,
                ):
                    runtime._state = state
                    runtime._keys = keys
                    # Its signs of life go by the ack wait of its service's consumer.
                    ack_wait = await bind_service_consumer(
                        state.js, state.topology, config.name, config.ack_wait
                    )
                    runtime._worker = Worker(
                        state,
                        runtime.runner,
                        config.name,
                        runtime.replica_id,
                        ack_wait,
                        SessionTurns(state, config.name, runtime.replica_id),
                        runtime._slot_given_back,
                        caller,
                        tracebacks=config.tracebacks,
                    )
                    async with runtime._serving(registration):
                        yield runtime
                        await runtime.drain(drain_timeout)

    @property
    def log_fields(self) -> dict[str, str]:
        """What its own log lines are about: its service and replica (telemetry/logs.py)."""
        return {"service": self.config.name, "replica": self.replica_id}

    async def _lookup_key(self, key_id: str) -> auth_pb2.StoredApiKey | None:
        """The mesh's API keys, for the Service API (readable once connected to NATS)."""
        if self._keys is None:
            raise UnavailableError("the replica is still starting; call again")
        return await self._keys.lookup(key_id)

    @contextlib.asynccontextmanager
    async def _serving(self, registration: Registration) -> AsyncIterator[None]:
        state, worker = self._state, self._worker
        assert state is not None and worker is not None
        self._consumer = PullConsumer(
            state.nc,
            state.topology.task_stream,
            state.topology.service_consumer(self.config.name),
            self._handle,
            capacity=self.config.max_concurrency,
        )
        # One subscription for every task's cancel signal (cheaper than one per task).
        cancels = await state.nc.subscribe(
            state.topology.cancel_subject("*"), cb=self._attempts.on_cancel
        )
        await self._consumer.start()
        state.reconnect_hooks.append(self._consumer.reconnected)
        state.reconnect_hooks.append(self._attempts.recheck_inputs)
        state.reconnect_hooks.append(worker.turns.recheck_waits)
        lease = asyncio.create_task(registration.keep_lease(), name=f"lease-{self.config.name}")
        logger.info(
            "service %s: replica %s serving (Service API %s)",
            self.config.name,
            self.replica_id,
            self.address,
            extra=self.log_fields,
        )
        try:
            yield
        finally:
            await cancel_and_wait(lease)
            await self._consumer.stop()
            await self._consumer.cancel_running()
            with contextlib.suppress(Exception):
                await cancels.unsubscribe()
            await registration.leave()

    @property
    def kind(self) -> resources_pb2.ServiceKind.ValueType:
        """The configured kind, or the one the workflow declares (a ToolService...)."""
        if self.config.kind in (
            resources_pb2.SERVICE_KIND_UNSPECIFIED,
            resources_pb2.SERVICE_KIND_WORKFLOW,
        ):
            return resources_pb2.ServiceKind.ValueType(self.runner.kind or self.config.kind)
        return self.config.kind

    def _service(self) -> resources_pb2.Service:
        return resources_pb2.Service(
            name=service_name(self.config.name),
            kind=self.kind,
            description=self.config.description or self.runner.description,
            input_schema=json_format.ParseDict(self.runner.input_schema(), struct_pb2.Struct()),
            retry_policy=self.config.retry_policy(),
            default_timeout=proto_time.duration(self.config.timeout or 0),
            accepted_event_types=self.runner.accepted_event_types,
            event_schemas={
                name: json_format.ParseDict(schema, struct_pb2.Struct())
                for name, schema in self.runner.event_schemas().items()
            },
            tools=[
                json_format.ParseDict(t, resources_pb2.ServiceTool()) for t in self.runner.tools()
            ],
            models=self.runner.models(),
        )

    def describe(self) -> service_pb2.DescribeServiceResponse:
        return service_pb2.DescribeServiceResponse(
            name=service_name(self.config.name),
            kind=self.kind,
            description=self.config.description or self.runner.description,
            input_schema=json_format.ParseDict(self.runner.input_schema(), struct_pb2.Struct()),
            replica=self.replica(),
            running_task_count=len(self._attempts),
            paused=self.paused,
            accepted_event_types=self.runner.accepted_event_types,
        )

    def replica(self) -> resources_pb2.Replica:
        state = (
            resources_pb2.REPLICA_STATE_DRAINING
            if self.draining
            else resources_pb2.REPLICA_STATE_PAUSED
            if self.paused
            else resources_pb2.REPLICA_STATE_SERVING
        )
        return resources_pb2.Replica(
            replica_id=self.replica_id,
            address=self.address,
            state=state,
            running_task_count=len(self._attempts),
            max_concurrency=self.config.max_concurrency,
            runtime="python",
        )

    # ------------------------------------------------------------ steering

    def running_tasks(self) -> list[resources_pb2.Task]:
        return self._attempts.tasks()

    def pause(self) -> None:
        if self.draining:
            raise FailedPreconditionError("the replica is draining")
        self.paused = True
        if self._consumer is not None:
            self._consumer.pause()
        logger.info(
            "service %s: replica %s paused",
            self.config.name,
            self.replica_id,
            extra=self.log_fields,
        )

    async def resume(self) -> None:
        if self.draining:
            raise FailedPreconditionError("the replica is draining")
        self.paused = False
        if self._consumer is not None:
            await self._consumer.resume()
        logger.info(
            "service %s: replica %s resumed",
            self.config.name,
            self.replica_id,
            extra=self.log_fields,
        )

    async def drain(self, timeout: float | None = None) -> tuple[int, int]:
        """Stop taking tasks and finish the running ones, handing back those still
        running after `timeout` and, at once, those waiting for input (a person's
        answer, a client's tool results); (finished, handed back).

        The drain belongs to the replica, not to the call that asked for it: a call
        that ends first (its deadline passed, its client left) leaves it to run to its
        end. A second call waits for the first drain and gets its counts.
        """
        if self._draining is None:
            self.draining = True
            self._draining = asyncio.create_task(self._drain(timeout))
        return await asyncio.shield(self._draining)

    async def _drain(self, timeout: float | None) -> tuple[int, int]:
        attempts = self._attempts
        before, handed_back = attempts.finished_count, attempts.handed_back_count
        consumer = self._consumer
        requeued = 0
        if consumer is not None:
            consumer.pause()
            attempts.hand_back_waiting()
            try:
                async with asyncio.timeout(timeout):
                    await consumer.wait_idle()
            except TimeoutError:
                requeued = consumer.running
                await consumer.cancel_running()
        self.drained.set()
        logger.info(
            "service %s: replica %s drained",
            self.config.name,
            self.replica_id,
            extra=self.log_fields,
        )
        # Handed-back tasks left their handlers too: they are not counted as finished.
        requeued += attempts.handed_back_count - handed_back
        return attempts.finished_count - before - requeued, requeued

    # ------------------------------------------------------------ tasks

    async def _handle(self, msg: Msg) -> None:
        worker = self._worker
        assert worker is not None
        await self._attempts.run(worker, msg)

    async def _publish_event(
        self, task: str, type: str, payload: dict[str, Any], event_id: str
    ) -> None:
        state = self._state
        assert state is not None
        await self._attempts.publish_event(state, task, type, payload, event_id)

    @contextlib.asynccontextmanager
    async def _slot_given_back(self) -> AsyncIterator[None]:
        """While an attempt waits for its turn, its delivery slot serves others."""
        if self._consumer is None:
            yield
            return
        async with self._consumer.slot_given_back():
            yield
