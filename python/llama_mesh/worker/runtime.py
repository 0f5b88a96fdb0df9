"""The service runtime: serves any Workflow as a named service of the mesh.

One runtime for every kind of service. Per replica it

- registers with the control plane over gRPC and renews its lease;
- takes tasks from the durable consumer shared by all replicas of the service, at
  most ``max_concurrency`` at once (PullConsumer);
- for each task: marks it RUNNING, restores the session's saved Context, runs the
  workflow, publishes every streamed event, saves the new Context, records the
  result, and only then acks the message (``ack_sync``);
- retries failures its retry policy calls retryable (nak with backoff), and fails
  the rest with a typed google.rpc.Status and a dead letter;
- serves the Service API (describe, pause/resume, drain, running tasks).

    async with ServiceRuntime.start(EchoWorkflow(), ServiceConfig("echo"), "127.0.0.1:50051"):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import nats.errors
from google.protobuf import json_format, struct_pb2
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from workflows import Workflow
from workflows.events import Event
from workflows.handler import WorkflowHandler

from llama_mesh.client import AsyncClient, Credentials
from llama_mesh.client._async import CHANNEL_OPTIONS
from llama_mesh.config import ServiceConfig
from llama_mesh.core import proto_time
from llama_mesh.core.errors import (
    FailedPreconditionError,
    RetryableError,
    UnavailableError,
    error_for_code,
)
from llama_mesh.core.json_values import to_python, to_value
from llama_mesh.core.lifecycle import (
    ATTEMPT_FAILED,
    DEFAULT_MAX_ATTEMPTS,
    FAILED,
    PENDING,
    RUNNING,
    STOP,
    SUCCEEDED,
    WAITING,
    cancelled_event,
    deadline_event,
    is_final,
)
from llama_mesh.core.names import TaskName, new_id, service_name
from llama_mesh.core.status import task_status
from llama_mesh.jetstream.api_keys import ApiKeyStore
from llama_mesh.jetstream.connection import MeshState
from llama_mesh.jetstream.journal import task_key
from llama_mesh.jetstream.pull_consumer import PullConsumer
from llama_mesh.jetstream.session_lock import Revisions, SessionLock
from llama_mesh.jetstream.topology import Topology, ensure_service_consumer
from llama_mesh.rpc.security import NO_AUTH, SecuritySettings, server_security
from llama_mesh.rpc.server import serve
from llama_mesh.v1 import (
    auth_pb2,
    control_plane_pb2,
    control_plane_pb2_grpc,
    resources_pb2,
    service_pb2,
    service_pb2_grpc,
)
from llama_mesh.worker.child_tasks import ChildCaller, RunningTask, current_task
from llama_mesh.worker.nested import use_mesh_for_nested
from llama_mesh.worker.service_api import ServiceAPIServicer
from llama_mesh.worker.task_inputs import TaskInputs
from llama_mesh.worker.workflow_runner import RunOutcome, WorkflowRunner, event_payload

logger = logging.getLogger(__name__)

SERVICE_API = service_pb2.DESCRIPTOR.services_by_name["ServiceAPI"].full_name


class _AlreadyFinished(Exception):
    """The task reached a final state elsewhere before this attempt started."""


class _WorkflowFailed(Exception):
    """The workflow itself raised (as opposed to the mesh's own calls failing)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _is_mesh_error(err: Exception) -> bool:
    """Errors of the mesh's own NATS calls made while the workflow ran (e.g. event
    publishing during a failover)."""
    return isinstance(err, nats.errors.Error)


HAND_BACK_DELAY = 1.0


async def _started(
    started: asyncio.Task[tuple[resources_pb2.Task, int]],
) -> tuple[resources_pb2.Task, int]:
    """The RUNNING record; _AlreadyFinished if the task had finished meanwhile."""
    try:
        return await asyncio.shield(started)
    except FailedPreconditionError:
        raise _AlreadyFinished from None


@dataclass
class _Running:
    task: resources_pb2.Task
    run: asyncio.Task[Any] | None = None
    cancel_reason: str = ""
    # Tasks that pass events sent by clients into the workflow (human in the loop).
    forwards: set[asyncio.Task[None]] = field(default_factory=set)
    # The write that records the attempt as RUNNING (owned by _run_locked).
    started: asyncio.Task[tuple[resources_pb2.Task, int]] | None = None
    # The answers the task got while it waited for input (human in the loop).
    inputs: TaskInputs | None = None


class ServiceRuntime:
    """One replica of a service."""

    def __init__(
        self,
        workflow: Workflow,
        config: ServiceConfig,
        control_plane: str,
    ) -> None:
        self.runner = WorkflowRunner(workflow)
        self.config = config
        self.control_plane = control_plane
        self.replica_id = new_id()
        self.address = ""
        self.paused = False
        self.draining = False
        self.drained = asyncio.Event()
        self._running: dict[str, _Running] = {}
        self._state: MeshState | None = None
        self._consumer: PullConsumer | None = None
        self._stub: control_plane_pb2_grpc.ControlPlaneAPIStub | None = None
        self._metadata: list[tuple[str, str]] = []
        self._keys: ApiKeyStore | None = None
        self.finished_count = 0
        self._lock_revisions = Revisions()
        self._caller: ChildCaller | None = None

    # ------------------------------------------------------------ lifecycle

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        workflow: Workflow,
        config: ServiceConfig,
        control_plane: str,
        *,
        nats_urls: list[str] | None = None,
        drain_timeout: float = 30.0,
        user_credentials: str | None = None,
        credentials: Credentials | None = None,
        security: SecuritySettings = NO_AUTH,
    ) -> AsyncIterator[ServiceRuntime]:
        """Run the replica for the duration of the block; drain it on exit.

        `credentials` (the service's token, TLS to the control plane) default to the
        environment's (see llama_mesh.client.Credentials); `security` says how its
        own Service API checks callers (against the mesh's API keys).
        """
        runtime = cls(workflow, config, control_plane)
        creds = credentials or Credentials.from_env()
        runtime._metadata = creds.metadata()
        async with (
            creds.channel(control_plane, CHANNEL_OPTIONS) as channel,
            AsyncClient(control_plane, credentials=creds) as nested_client,
            server_security(security, runtime._lookup_key) as service_security,
        ):
            # Nested workflows run as child tasks on their deployed services.
            runtime._caller = ChildCaller(nested_client, runtime._publish_event)
            nested = use_mesh_for_nested(workflow)
            if nested:
                logger.info("service %s calls nested services %s", config.name, nested)
            runtime._stub = control_plane_pb2_grpc.ControlPlaneAPIStub(channel)
            servicer = ServiceAPIServicer(runtime)
            async with serve(
                [(service_pb2_grpc.add_ServiceAPIServicer_to_server, servicer, SERVICE_API)],
                host=config.host,
                port=config.port,
                security=service_security,
            ) as (address, _):
                runtime.address = address
                queue = await runtime._register()
                urls = nats_urls or list(queue.nats_urls)
                async with (
                    MeshState.connect(
                        urls,
                        Topology(prefix=queue.prefix or "mesh"),
                        name=f"llama-mesh-service-{config.name}",
                        user_credentials=user_credentials,
                    ) as state,
                    ApiKeyStore.open(state.js, state.topology) as keys,
                ):
                    runtime._state = state
                    runtime._keys = keys
                    async with runtime._serving():
                        yield runtime
                        await runtime._drain(drain_timeout)

    async def _lookup_key(self, key_id: str) -> auth_pb2.StoredApiKey | None:
        """The mesh's API keys, for the Service API (readable once connected to NATS)."""
        if self._keys is None:
            raise UnavailableError("the replica is still starting; call again")
        return await self._keys.lookup(key_id)

    @contextlib.asynccontextmanager
    async def _serving(self) -> AsyncIterator[None]:
        state = self._state
        assert state is not None
        durable = await ensure_service_consumer(
            state.js, state.topology, self.config.name, ack_wait=self.config.ack_wait
        )
        self._consumer = PullConsumer(
            state.nc,
            state.topology.task_stream,
            durable,
            self._handle,
            capacity=self.config.max_concurrency,
        )
        # One subscription for every task's cancel signal (cheaper than one per task).
        cancels = await state.nc.subscribe(state.topology.cancel_subject("*"), cb=self._on_cancel)
        await self._consumer.start()
        state.reconnect_hooks.append(self._consumer.reconnected)
        lease = asyncio.create_task(self._renew_lease(), name=f"lease-{self.config.name}")
        logger.info(
            "service %s: replica %s serving (Service API %s)",
            self.config.name,
            self.replica_id,
            self.address,
        )
        try:
            yield
        finally:
            lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lease
            await self._consumer.stop()
            await self._consumer.cancel_running()
            with contextlib.suppress(Exception):
                await cancels.unsubscribe()
            await self._deregister()

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
            tools=[
                json_format.ParseDict(t, resources_pb2.ServiceTool()) for t in self.runner.tools()
            ],
        )

    def describe(self) -> service_pb2.DescribeServiceResponse:
        return service_pb2.DescribeServiceResponse(
            name=service_name(self.config.name),
            kind=self.kind,
            description=self.config.description or self.runner.description,
            input_schema=json_format.ParseDict(self.runner.input_schema(), struct_pb2.Struct()),
            replica=self.replica(),
            running_task_count=len(self._running),
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
            running_task_count=len(self._running),
            max_concurrency=self.config.max_concurrency,
            runtime="python",
        )

    async def _register(self) -> resources_pb2.QueueConfig:
        assert self._stub is not None
        try:
            response = await self._stub.RegisterService(
                control_plane_pb2.RegisterServiceRequest(
                    service=self._service(),
                    replica=self.replica(),
                    lease_duration=proto_time.duration(self.config.lease),
                ),
                timeout=10,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as err:
            raise error_for_code(
                err.code(),
                f"cannot register with the control plane at {self.control_plane}: {err.details()}",
            ) from err
        queue: resources_pb2.QueueConfig = response.queue_config
        return queue

    async def _renew_lease(self) -> None:
        assert self._stub is not None
        while True:
            # The lease is the heartbeat; a third of it leaves room for two misses.
            await asyncio.sleep(self.config.lease / 3)
            try:
                await self._stub.RenewServiceLease(
                    control_plane_pb2.RenewServiceLeaseRequest(
                        name=service_name(self.config.name),
                        replica_id=self.replica_id,
                        state=self.replica().state,
                        running_task_count=len(self._running),
                        lease_duration=proto_time.duration(self.config.lease),
                    ),
                    timeout=5,
                    metadata=self._metadata,
                )
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    logger.warning("service %s: lease lost; registering again", self.config.name)
                    with contextlib.suppress(Exception):
                        await self._register()
                else:
                    logger.warning(
                        "service %s: lease renewal failed: %s", self.config.name, err.details()
                    )

    async def _deregister(self) -> None:
        if self._stub is None:
            return
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self._stub.DeregisterService(
                control_plane_pb2.DeregisterServiceRequest(
                    name=service_name(self.config.name), replica_id=self.replica_id
                ),
                timeout=5,
                metadata=self._metadata,
            )
        logger.info("service %s: replica %s left", self.config.name, self.replica_id)

    # ------------------------------------------------------------ steering

    def running_tasks(self) -> list[resources_pb2.Task]:
        return [r.task for r in self._running.values()]

    def pause(self) -> None:
        if self.draining:
            raise FailedPreconditionError("the replica is draining")
        self.paused = True
        if self._consumer is not None:
            self._consumer.pause()
        logger.info("service %s: replica %s paused", self.config.name, self.replica_id)

    async def resume(self) -> None:
        if self.draining:
            raise FailedPreconditionError("the replica is draining")
        self.paused = False
        if self._consumer is not None:
            await self._consumer.resume()
        logger.info("service %s: replica %s resumed", self.config.name, self.replica_id)

    async def drain(self, timeout: float | None = None) -> tuple[int, int]:
        """Stop taking tasks and finish the running ones; (finished, handed back)."""
        return await self._drain(timeout)

    async def _drain(self, timeout: float | None) -> tuple[int, int]:
        if self.draining:
            await self.drained.wait()
            return 0, 0
        self.draining = True
        before = self.finished_count
        consumer = self._consumer
        requeued = 0
        if consumer is not None:
            consumer.pause()
            try:
                async with asyncio.timeout(timeout):
                    await consumer.wait_idle()
            except TimeoutError:
                requeued = consumer.running
                await consumer.cancel_running()
        self.drained.set()
        logger.info("service %s: replica %s drained", self.config.name, self.replica_id)
        return self.finished_count - before, requeued

    # ------------------------------------------------------------ tasks

    async def _handle(self, msg: Msg) -> None:
        state = self._state
        assert state is not None
        envelope = resources_pb2.Envelope.FromString(msg.data)
        if not envelope.HasField("task_assignment"):
            logger.error("service %s: not a task on %s; dropped", self.config.name, msg.subject)
            await msg.term()
            return
        assigned = envelope.task_assignment.task
        name = TaskName.parse(assigned.name)
        found = await state.tasks.find(task_key(name))
        if found is None:
            logger.info("task %s: gone (session deleted); dropped", name)
            await msg.ack_sync()
            return
        task, revision = found
        if is_final(task.state):
            # Finished before (e.g. cancelled while pending, or crashed after recording
            # the result): make sure its last event is out, then let the message go.
            event = await state.journal.finish_event(task)
            await state.journal.publish(name, event, event_id=f"{name.task_id}.final")
            await msg.ack_sync()
            return
        # Attempts are counted in the record, not by deliveries: a message handed back
        # by a paused or draining replica did not start an attempt.
        attempt = task.attempt_count + 1
        running = _Running(task=task)
        # Registered before the attempt records RUNNING: a control plane that sees the
        # task running and signals a cancel finds it here.
        self._running[name.task_id] = running
        keepalive = asyncio.create_task(self._keep_alive(msg))
        try:
            await self._attempt(msg, name, (task, revision), attempt, running)
        finally:
            for child in (keepalive, *running.forwards):
                child.cancel()
            await asyncio.gather(keepalive, *running.forwards, return_exceptions=True)
            self._running.pop(name.task_id, None)
            self.finished_count += 1

    async def _on_cancel(self, msg: Msg) -> None:
        """A cancel signal for some task: stop it if this replica runs it."""
        running = self._running.get(msg.subject.rpartition(".")[2])
        if running is None:
            return
        signal = resources_pb2.Envelope.FromString(msg.data).task_cancellation
        running.cancel_reason = signal.reason or "cancelled"
        if running.run is not None:
            running.run.cancel()

    async def _keep_alive(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.config.ack_wait / 3)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _final(
        self,
        name: TaskName,
        event: resources_pb2.TaskEvent,
        known: tuple[resources_pb2.Task, int] | None = None,
    ) -> resources_pb2.Task | None:
        state = self._state
        assert state is not None
        try:
            task, _ = await state.journal.record_from(
                name,
                event,
                replica_id=self.replica_id,
                event_id=f"{name.task_id}.final",
                known=known,
            )
            return task
        except FailedPreconditionError:
            return None  # someone else finished it (e.g. cancelled while pending)

    async def _attempt(
        self,
        msg: Msg,
        name: TaskName,
        known: tuple[resources_pb2.Task, int],
        attempt: int,
        running: _Running,
    ) -> None:
        state = self._state
        assert state is not None
        task = known[0]
        policy = task.retry_policy
        max_attempts = policy.max_attempts or DEFAULT_MAX_ATTEMPTS
        if task.cancel_requested:
            await self._final(name, cancelled_event(attempt, "cancelled before it started"))
            await msg.ack_sync()
            return
        if attempt > max_attempts:
            event = resources_pb2.TaskEvent(
                type=STOP,
                state=FAILED,
                attempt=attempt,
                error=task_status(
                    grpc.StatusCode.ABORTED,
                    f"the task was delivered {attempt} times (its replicas stopped or "
                    f"crashed while running it); max_attempts is {max_attempts}",
                    "MaxAttemptsExceeded",
                ),
            )
            await self._fail(msg, name, event)
            return
        deadline = proto_time.epoch_seconds(task.deadline) if task.HasField("deadline") else None
        if deadline is not None and deadline <= time.time():
            await self._fail(msg, name, _deadline_event(attempt), dead_letter=False)
            return
        lock = (
            # A child runs while its parent holds the lock of the parent's service; it
            # takes no lock itself, or a workflow that calls its own service would wait
            # for itself.
            None
            if task.parent_task
            else SessionLock(
                state.locks,
                f"{name.session_id}.{self.config.name}",
                name.task_id,
                self._finished_task(name),
                self._lock_revisions,
            )
        )
        run = asyncio.create_task(self._run_locked(name, known, attempt, deadline, running, lock))
        running.run = run
        scope = asyncio.timeout(None if deadline is None else max(deadline - time.time(), 0))
        try:
            async with scope:
                outcome, recorded = await run
        except asyncio.CancelledError:
            if running.cancel_reason:
                await self._final(name, cancelled_event(attempt, running.cancel_reason))
                await msg.ack_sync()
                return
            # The replica itself is stopping: hand the task back for another replica.
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except _WorkflowFailed as failed:
            await self._failed_attempt(msg, name, task, attempt, max_attempts, failed.error)
            return
        except _AlreadyFinished:
            await msg.ack_sync()
            return
        except Exception as err:
            if isinstance(err, TimeoutError) and scope.expired():
                await self._fail(msg, name, _deadline_event(attempt), dead_letter=False)
                return
            # The mesh's own calls failed (e.g. NATS fails over): not the workflow's
            # fault, so hand the task back instead of failing it.
            logger.warning("task %s: handed back after %r", name, err)
            with contextlib.suppress(Exception):
                await msg.nak(delay=HAND_BACK_DELAY)
            return
        result = resources_pb2.TaskEvent(type=STOP, state=SUCCEEDED, attempt=attempt)
        result.payload.CopyFrom(to_value(outcome.result, "the workflow's result"))
        # The Context is saved: the next run in the session may start while the
        # result is recorded.
        releasing = lock.release() if lock is not None else asyncio.sleep(0)
        await asyncio.gather(releasing, self._final(name, result, recorded))
        await msg.ack_sync()

    async def _run_locked(
        self,
        name: TaskName,
        known: tuple[resources_pb2.Task, int],
        attempt: int,
        deadline: float | None,
        running: _Running,
        lock: SessionLock | None,
    ) -> tuple[RunOutcome, tuple[resources_pb2.Task, int]]:
        """Take the session's lock, run the workflow and save its Context.

        On success the caller releases the lock; on failure it is released here.
        """
        state = self._state
        assert state is not None
        task = known[0]
        context_key = f"{name.session_id}.{self.config.name}"
        if lock is not None:
            await lock.acquire()
        # RUNNING is recorded while the workflow starts; it must land before any other
        # state change of this attempt (WAITING, the result) and before the Context is
        # saved, and those wait for it.
        started = asyncio.create_task(
            state.journal.record_from(
                name,
                resources_pb2.TaskEvent(state=RUNNING, attempt=attempt),
                replica_id=self.replica_id,
                publish=False,
                known=known,
            )
        )
        running.started = started
        try:
            saved = await _get_json(state, context_key)
            kwargs = to_python(task.input)

            async def on_event(event: Event, handler: WorkflowHandler) -> None:
                await self._on_workflow_event(name, attempt, event, handler, running)

            token = current_task.set(RunningTask(str(name), deadline, self._caller))
            try:
                outcome = await self.runner.run(kwargs, saved, on_event)
            except Exception as err:
                if isinstance(err, _AlreadyFinished) or _is_mesh_error(err):
                    raise
                raise _WorkflowFailed(err) from err
            finally:
                current_task.reset(token)
            recorded = await _started(started)
            await state.contexts.put(context_key, json.dumps(outcome.context).encode())
            return outcome, recorded
        except BaseException:
            if not started.done():
                started.cancel()
            await asyncio.gather(started, return_exceptions=True)
            if lock is not None:
                await asyncio.shield(lock.release())
            raise

    async def _publish_event(
        self, task: str, type: str, payload: dict[str, Any], event_id: str
    ) -> None:
        """Publish an event on a task's stream for a running task (a child announced,
        an orchestrator's decision); `event_id` de-duplicates a replayed one."""
        state = self._state
        assert state is not None
        event = resources_pb2.TaskEvent(type=type)
        event.payload.CopyFrom(to_value(payload, f"event {type}"))
        await state.journal.publish(TaskName.parse(task), event, event_id=event_id)

    def _finished_task(self, name: TaskName) -> Callable[[str], Awaitable[bool]]:
        async def finished(task_id: str) -> bool:
            state = self._state
            assert state is not None
            found = await state.tasks.find(f"{name.session_id}.{task_id}")
            return found is None or is_final(found[0].state)

        return finished

    async def _on_workflow_event(
        self,
        name: TaskName,
        attempt: int,
        event: Event,
        handler: WorkflowHandler,
        running: _Running,
    ) -> None:
        state = self._state
        assert state is not None
        out = resources_pb2.TaskEvent(type=type(event).__name__, attempt=attempt)
        out.payload.CopyFrom(to_value(event_payload(event), f"event {type(event).__name__}"))
        if not self.runner.is_input_request(event):
            await state.journal.publish(name, out)
            return
        # Human in the loop. A question an earlier attempt of this task asked and got
        # answered is answered again from the stored answers (task_inputs.py).
        if running.inputs is None:
            running.inputs = TaskInputs(state, name, self.runner.make_event)
        inputs = running.inputs
        await inputs.turn.acquire()  # released below, or by _forward_input once answered
        subscription: Any = None
        try:
            answer = await inputs.stored()
            if answer is None:
                # Listen for the answer before telling anyone we wait.
                subscription = await inputs.subscribe()
                out.state = WAITING
                if running.started is not None:
                    await _started(running.started)
                await state.journal.record(name, out, replica_id=self.replica_id)
        except BaseException:
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
            inputs.turn.release()
            raise
        if answer is not None:
            inputs.turn.release()
            await state.journal.publish(name, out)
            handler.ctx.send_event(answer)
            return
        running.forwards.add(
            asyncio.create_task(self._forward_input(inputs, subscription, handler))
        )

    async def _forward_input(
        self, inputs: TaskInputs, subscription: Any, handler: WorkflowHandler
    ) -> None:
        try:
            handler.ctx.send_event(await inputs.next(subscription))
        finally:
            inputs.turn.release()
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _failed_attempt(
        self,
        msg: Msg,
        name: TaskName,
        task: resources_pb2.Task,
        attempt: int,
        max_attempts: int,
        err: Exception,
    ) -> None:
        state = self._state
        assert state is not None
        policy = task.retry_policy
        error_type = type(err).__name__
        retryable = isinstance(err, RetryableError) or error_type in policy.retryable_error_types
        status = task_status(grpc.StatusCode.UNKNOWN, f"{error_type}: {err}", error_type)
        if retryable and attempt < max_attempts:
            initial = (
                proto_time.seconds(policy.initial_backoff)
                if policy.HasField("initial_backoff")
                else 1.0
            )
            ceiling = (
                proto_time.seconds(policy.max_backoff) if policy.HasField("max_backoff") else 30.0
            )
            factor = policy.backoff_multiplier or 2.0
            delay = min(initial * factor ** (attempt - 1), ceiling)
            await state.journal.record(
                name,
                resources_pb2.TaskEvent(
                    type=ATTEMPT_FAILED, state=PENDING, attempt=attempt, error=status
                ),
                replica_id=self.replica_id,
            )
            logger.info(
                "task %s: attempt %d failed (%s); retry in %.1fs", name, attempt, error_type, delay
            )
            await msg.nak(delay=delay)
            return
        logger.info("task %s: failed: %s", name, error_type)
        await self._fail(
            msg,
            name,
            resources_pb2.TaskEvent(type=STOP, state=FAILED, attempt=attempt, error=status),
        )

    async def _fail(
        self, msg: Msg, name: TaskName, event: resources_pb2.TaskEvent, *, dead_letter: bool = True
    ) -> None:
        state = self._state
        assert state is not None
        task = await self._final(name, event)
        if task is not None and dead_letter:
            letter = resources_pb2.Envelope(
                id=f"{name.task_id}.dead",
                dead_letter=resources_pb2.DeadLetter(
                    task=task, delivery_count=msg.metadata.num_delivered
                ),
            )
            await state.js.publish(
                state.topology.dead_letter_subject(self.config.name),
                letter.SerializeToString(),
                headers={"Nats-Msg-Id": letter.id},
            )
        await msg.ack_sync()


def _deadline_event(attempt: int) -> resources_pb2.TaskEvent:
    return deadline_event(
        attempt, "the task did not finish before its deadline; the workflow was stopped"
    )


async def _get_json(state: MeshState, key: str) -> dict[str, Any] | None:
    try:
        entry = await state.contexts.get(key)
    except KeyNotFoundError:
        return None
    if not entry.value:
        return None
    data: dict[str, Any] = json.loads(entry.value)
    return data
