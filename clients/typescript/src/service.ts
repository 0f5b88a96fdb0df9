/**
 * A llama-mesh service in Node, with no NATS client: it registers with the control
 * plane over gRPC and takes its tasks through the Queue API.
 *
 *     const mesh = new MeshClient("127.0.0.1:50051");
 *     const service = new QueueService(mesh, {
 *       name: "upper",
 *       handler: async (input) => String(input.text).toUpperCase(),
 *     });
 *     await service.start();   // registered, subscribed
 *     ...
 *     await service.stop();    // finishes running tasks, deregisters
 *
 * Per task it does what the Python runtime (python/llama_mesh/runtime.py) does:
 * reads the task (a finished or cancel-requested one is not run), reports RUNNING,
 * runs the handler, reports the result (or a typed failure) by publishing a
 * TaskEvent on `topics/events.{task_id}`, and only then acks the message. Long tasks
 * are kept alive with ExtendMessages; a RetryableError is retried with backoff (nak).
 *
 * What it cannot do: learn that a *running* task was cancelled. The control plane
 * signals that on a NATS subject the Queue API does not expose (see docs/clients.md).
 */
import { create, fromJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { randomUUID } from "node:crypto";

import {
  EnvelopeSchema,
  ReplicaState,
  ServiceKind,
  TaskState,
  type Task,
  type TaskEventSchema,
} from "./gen/llama_mesh/v1/resources_pb.js";
import type { QueueMessage } from "./gen/llama_mesh/v1/queue_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Status, StatusSchema } from "./gen/google/rpc/status_pb.js";
import { errorInfo, FailedPreconditionError, mapped, meshError, NotFoundError } from "./errors.js";
import { isFinal, type MeshClient } from "./mesh.js";

/** Throw this from a handler to have the attempt retried with backoff. */
export class RetryableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RetryableError";
  }
}

/** What a handler gets besides the task input. */
export interface TaskContext {
  task: Task;
  /** 1 on the first attempt. */
  attempt: number;
  /** Aborted when the task's deadline passes or the service stops. */
  signal: AbortSignal;
  /** Stream an event to the task's clients (StreamTaskEvents). */
  progress(type: string, payload: JsonValue): Promise<void>;
}

/** Runs one task: gets the input object, returns the result as JSON. */
export type Handler = (input: JsonObject, context: TaskContext) => Promise<JsonValue>;

export interface ServiceOptions {
  /** The service id clients run, e.g. "upper". */
  name: string;
  handler: Handler;
  description?: string;
  /** JSON Schema of the input; the control plane checks its `required` fields. */
  inputSchema?: JsonObject;
  kind?: ServiceKind;
  /** Tasks run at once by this replica. Default 4. */
  maxConcurrency?: number;
  /** Attempts of a task unless it sets its own. Default 3. */
  maxAttempts?: number;
  /** Lease on the registration, renewed every third of it. Default 30 s. */
  leaseMs?: number;
  /** Redelivery delay of unacked tasks, kept alive every third of it. Default 30 s. */
  ackWaitMs?: number;
  /** Logs go here (stderr by default). */
  log?: (line: string) => void;
}

const STOP = "StopEvent";
/** Node timers take at most 2^31 - 1 ms (24.8 days); a later deadline needs no timer. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Redelivery delay after an unexpected error of this runtime (not of the handler). */
const INTERNAL_RETRY_MS = 1000;
const ATTEMPT_FAILED = "llama_mesh.AttemptFailed";

/** A google.rpc.Status whose ErrorInfo detail names the error type, as in status.py. */
export function taskStatus(code: Code, message: string, errorType = ""): MessageInitShape<typeof StatusSchema> {
  return { code, message, details: errorType ? [errorInfo(errorType)] : [] };
}

/** One replica of a service served from Node through the Queue API. */
export class QueueService {
  readonly replicaId = randomUUID().replaceAll("-", "");
  readonly options: Required<Omit<ServiceOptions, "description" | "inputSchema">> &
    Pick<ServiceOptions, "description" | "inputSchema">;
  /** Ends the Subscribe stream. */
  private readonly unsubscribe = new AbortController();
  /** Aborts running handlers (after the drain timeout of stop()). */
  private readonly cancelRunning = new AbortController();
  /** Messages in hand (running or waiting for a slot), by ack id. */
  private readonly running = new Map<string, Promise<void>>();
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private leaseTimer: NodeJS.Timeout | undefined;
  private subscription: Promise<void> | undefined;

  constructor(
    readonly mesh: MeshClient,
    options: ServiceOptions,
  ) {
    this.options = {
      kind: ServiceKind.WORKFLOW,
      maxConcurrency: 4,
      maxAttempts: 3,
      leaseMs: 30_000,
      ackWaitMs: 30_000,
      log: (line) => console.error(line),
      ...options,
    };
  }

  get serviceName(): string {
    return `services/${this.options.name}`;
  }

  get topic(): string {
    return `topics/tasks.${this.options.name}`;
  }

  /**
   * Register and start taking tasks. Tasks created from now on wait in the queue
   * (a JetStream work queue) until this replica or another member of the group
   * takes them, so the service is ready as soon as it is registered.
   */
  async start(): Promise<void> {
    await this.register();
    this.leaseTimer = setInterval(() => void this.renew(), this.options.leaseMs / 3);
    this.subscription = this.consume();
    this.subscription.catch((err) => this.options.log(`subscription ended: ${meshError(err).message}`));
    this.options.log(`service ${this.serviceName}: replica ${this.replicaId} serving (node)`);
  }

  /**
   * Stop taking tasks, give running ones `drainMs` to finish (then hand them back to
   * the queue for another replica), and deregister.
   */
  async stop(drainMs = 10_000): Promise<void> {
    this.unsubscribe.abort();
    await this.subscription?.catch(() => undefined);
    const drained = Promise.allSettled(this.running.values());
    const timer = setTimeout(() => this.cancelRunning.abort(new Error("the replica is stopping")), drainMs);
    await drained;
    clearTimeout(timer);
    clearInterval(this.leaseTimer);
    try {
      await mapped(() =>
        this.mesh.controlPlane.deregisterService({ name: this.serviceName, replicaId: this.replicaId }),
      );
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    this.options.log(`service ${this.serviceName}: replica ${this.replicaId} left`);
  }

  private replica(state = ReplicaState.SERVING) {
    return {
      replicaId: this.replicaId,
      state,
      runningTaskCount: this.running.size,
      maxConcurrency: this.options.maxConcurrency,
      runtime: "node",
    };
  }

  private async register(): Promise<void> {
    const o = this.options;
    await mapped(() =>
      this.mesh.controlPlane.registerService({
        service: {
          name: this.serviceName,
          kind: o.kind,
          description: o.description ?? "",
          inputSchema: o.inputSchema,
          retryPolicy: { maxAttempts: o.maxAttempts },
        },
        replica: this.replica(),
        leaseDuration: durationFromMs(o.leaseMs),
      }),
    );
  }

  private async renew(): Promise<void> {
    try {
      await mapped(() =>
        this.mesh.controlPlane.renewServiceLease({
          name: this.serviceName,
          replicaId: this.replicaId,
          state: ReplicaState.SERVING,
          runningTaskCount: this.running.size,
          leaseDuration: durationFromMs(this.options.leaseMs),
        }),
      );
    } catch (err) {
      if (err instanceof NotFoundError) {
        this.options.log(`service ${this.serviceName}: lease lost; registering again`);
        await this.register().catch((e) => this.options.log(`register failed: ${e}`));
      } else {
        this.options.log(`service ${this.serviceName}: lease renewal failed: ${err}`);
      }
    }
  }

  /** Subscribe until stopped; each message runs when a slot is free. */
  private async consume(): Promise<void> {
    const signal = this.unsubscribe.signal;
    const stream = this.mesh.queue.subscribe(
      {
        topic: this.topic,
        consumerGroup: this.options.name,
        maxInFlight: this.options.maxConcurrency,
        ackWait: durationFromMs(this.options.ackWaitMs),
      },
      { signal },
    );
    try {
      for await (const item of stream) {
        const message = item.message!;
        const done = this.handle(message).catch((err) =>
          this.options.log(`task message ${message.sequence}: ${meshError(err).message}`),
        );
        this.running.set(message.ackId, done);
        void done.finally(() => this.running.delete(message.ackId));
      }
    } catch (err) {
      if (!signal.aborted) throw meshError(err);
    }
  }

  /** Wait for one of maxConcurrency slots. */
  private async slot(): Promise<void> {
    while (this.active >= this.options.maxConcurrency) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.active += 1;
  }

  private release(): void {
    this.active -= 1;
    this.waiting.shift()?.();
  }

  private async publish(task: string, event: MessageInitShape<typeof TaskEventSchema>, id = ""): Promise<void> {
    const taskId = task.split("/").at(-1)!;
    await mapped(() =>
      this.mesh.queue.publish({
        topic: `topics/events.${taskId}`,
        envelope: create(EnvelopeSchema, { id, payload: { case: "taskEvent", value: { ...event, task } } }),
      }),
    );
  }

  /** The final event; false if someone else finished the task first. */
  private async finish(task: string, event: MessageInitShape<typeof TaskEventSchema>): Promise<boolean> {
    try {
      await this.publish(task, { type: STOP, ...event }, `${task.split("/").at(-1)}.final`);
      return true;
    } catch (err) {
      if (err instanceof FailedPreconditionError) return false;
      throw err;
    }
  }

  /** The replica is stopping: hand the task back for another replica. */
  private async handBack(message: QueueMessage): Promise<void> {
    await mapped(() => this.mesh.queue.nakMessages({ topic: this.topic, ackIds: [message.ackId] }));
  }

  private async ack(message: QueueMessage): Promise<void> {
    await mapped(() => this.mesh.queue.ackMessages({ topic: this.topic, ackIds: [message.ackId] }));
  }

  private async handle(message: QueueMessage): Promise<void> {
    const extend = setInterval(
      () =>
        void this.mesh.queue
          .extendMessages({ topic: this.topic, ackIds: [message.ackId] })
          .catch(() => undefined),
      this.options.ackWaitMs / 3,
    );
    await this.slot(); // never rejects: it only waits for release()
    try {
      if (this.cancelRunning.signal.aborted) await this.handBack(message);
      else await this.attempt(message);
    } catch (err) {
      // A bug here or the control plane unreachable: let the task be delivered again
      // soon (its attempts are counted) instead of after ack_wait.
      await this.mesh.queue
        .nakMessages({ topic: this.topic, ackIds: [message.ackId], delay: durationFromMs(INTERNAL_RETRY_MS) })
        .catch(() => undefined);
      throw err;
    } finally {
      clearInterval(extend);
      this.release();
    }
  }

  private async attempt(message: QueueMessage): Promise<void> {
    const envelope = message.envelope;
    if (envelope?.payload.case !== "taskAssignment") {
      this.options.log(`service ${this.serviceName}: message ${message.sequence} is not a task; dropped`);
      await this.ack(message);
      return;
    }
    const name = envelope.payload.value.task!.name;
    const attempt = message.deliveryCount;
    let task: Task;
    try {
      task = await this.mesh.getTask(name);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      this.options.log(`task ${name}: gone (session deleted); dropped`);
      await this.ack(message);
      return;
    }
    if (isFinal(task.state)) {
      await this.ack(message);
      return;
    }
    if (task.cancelRequested) {
      await this.finish(name, {
        state: TaskState.CANCELLED,
        attempt,
        error: taskStatus(Code.Canceled, "cancelled before it started", "Cancelled"),
      });
      await this.ack(message);
      return;
    }
    const maxAttempts = task.retryPolicy?.maxAttempts || this.options.maxAttempts;
    if (attempt > maxAttempts) {
      await this.finish(name, {
        state: TaskState.FAILED,
        attempt,
        error: taskStatus(
          Code.Aborted,
          `the task was delivered ${attempt} times; max_attempts is ${maxAttempts}`,
          "MaxAttemptsExceeded",
        ),
      });
      await this.ack(message);
      return;
    }
    const deadlineMs = task.deadline ? timestampMs(task.deadline) : undefined;
    if (deadlineMs !== undefined && deadlineMs <= Date.now()) {
      await this.finish(name, { state: TaskState.FAILED, attempt, error: deadlineStatus() });
      await this.ack(message);
      return;
    }
    try {
      await this.publish(name, { state: TaskState.RUNNING, attempt });
    } catch (err) {
      if (!(err instanceof FailedPreconditionError)) throw err;
      await this.ack(message);
      return;
    }
    const signals = [this.cancelRunning.signal];
    if (deadlineMs !== undefined && deadlineMs - Date.now() < MAX_TIMER_MS) {
      signals.push(AbortSignal.timeout(Math.max(Math.ceil(deadlineMs - Date.now()), 0)));
    }
    const signal = AbortSignal.any(signals);
    const context: TaskContext = {
      task,
      attempt,
      signal,
      progress: (type, payload) =>
        this.publish(name, { type, attempt, payload: fromJson(ValueSchema, payload) }),
    };
    let result: JsonValue;
    try {
      result = await abortable(this.options.handler(task.input ?? {}, context), signal);
    } catch (err) {
      await this.failed(message, task, attempt, maxAttempts, err);
      return;
    }
    await this.finish(name, { state: TaskState.SUCCEEDED, attempt, payload: fromJson(ValueSchema, result) });
    await this.ack(message);
  }

  private async failed(message: QueueMessage, task: Task, attempt: number, maxAttempts: number, err: unknown): Promise<void> {
    if (this.cancelRunning.signal.aborted) {
      await this.handBack(message);
      return;
    }
    if (err instanceof DeadlineError) {
      await this.finish(task.name, { state: TaskState.FAILED, attempt, error: deadlineStatus() });
      await this.ack(message);
      return;
    }
    const error = err instanceof Error ? err : new Error(String(err));
    const status = taskStatus(Code.Unknown, `${error.name}: ${error.message}`, error.name);
    const policy = task.retryPolicy;
    const retryable = error instanceof RetryableError || (policy?.retryableErrorTypes ?? []).includes(error.name);
    if (retryable && attempt < maxAttempts) {
      const initial = policy?.initialBackoff ? durationMs(policy.initialBackoff) : 1000;
      const ceiling = policy?.maxBackoff ? durationMs(policy.maxBackoff) : 30_000;
      const delayMs = Math.min(initial * (policy?.backoffMultiplier || 2) ** (attempt - 1), ceiling);
      await this.publish(task.name, { type: ATTEMPT_FAILED, state: TaskState.PENDING, attempt, error: status });
      await mapped(() =>
        this.mesh.queue.nakMessages({ topic: this.topic, ackIds: [message.ackId], delay: durationFromMs(delayMs) }),
      );
      return;
    }
    this.options.log(`task ${task.name}: failed: ${error.name}`);
    await this.finish(task.name, { state: TaskState.FAILED, attempt, error: status });
    await this.ack(message);
  }
}

class DeadlineError extends Error {}

function deadlineStatus() {
  return taskStatus(
    Code.DeadlineExceeded,
    "the task did not finish before its deadline; the handler was stopped",
    "DeadlineExceeded",
  );
}

/** `work`, or a rejection as soon as `signal` aborts (DeadlineError for a timeout). */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () =>
      reject(signal.reason instanceof DOMException && signal.reason.name === "TimeoutError" ? new DeadlineError() : signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

export type { Status };
