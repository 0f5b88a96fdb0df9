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
 * Per delivered task it only reports what happens: BeginTaskAttempt (the control
 * plane says whether to run it, and as which attempt), ReportTaskEvent for each
 * progress event, and CompleteTaskAttempt with the outcome: the result, or the error
 * (its type, message, and whether it is a RetryableError), or why the run stopped.
 * Whether a failure is retried and after which backoff, when a task fails for good
 * and is dead-lettered, what a passed deadline or a cancel makes of it: the control
 * plane decides that, with the task lifecycle the Python runtime uses, and acks or
 * naks the delivery itself. Long tasks are kept alive with ExtendMessages.
 */
import { fromJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { durationFromMs, durationMs, timestampMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { randomUUID } from "node:crypto";

import { ReplicaState, ServiceKind, type Task } from "./gen/llama_mesh/v1/resources_pb.js";
import {
  AttemptInterruption,
  type CompleteTaskAttemptRequestSchema,
  type QueueMessage,
} from "./gen/llama_mesh/v1/queue_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { mapped, meshError, NotFoundError } from "./errors.js";
import type { MeshClient } from "./mesh.js";

/** Throw this from a handler to have the attempt retried with the task's backoff. */
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
  /** Aborted when the task's deadline passes, it is cancelled, or the service stops. */
  signal: AbortSignal;
  /**
   * Stream an event to the task's clients (StreamTaskEvents). A cancel of the task is
   * noticed here: the signal aborts.
   */
  progress(type: string, payload: JsonValue): Promise<void>;
}

/** Runs one task: gets the input object, returns the result as JSON. */
export type Handler = (input: JsonObject, context: TaskContext) => Promise<JsonValue>;

/** The service's retry policy, registered with it; unset fields take the mesh's defaults. */
export interface RetryPolicy {
  /** Attempts in all, including the first. */
  maxAttempts?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  backoffMultiplier?: number;
  /** Error names (`error.name`) retried besides RetryableError. */
  retryableErrorTypes?: string[];
}

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
  /** How the control plane retries this service's tasks unless a task sets its own. */
  retryPolicy?: RetryPolicy;
  /** Lease on the registration, renewed every third of it. Default 30 s. */
  leaseMs?: number;
  /**
   * Redelivery delay of unacked tasks asked for; default 30 s. It applies when no other
   * replica of the service runs, else theirs stays: each task is kept alive every third
   * of the ack wait its message carries.
   */
  ackWaitMs?: number;
  /** Logs go here (stderr by default). */
  log?: (line: string) => void;
}

/** Node timers take at most 2^31 - 1 ms (24.8 days); a later deadline needs no timer. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Outcome = MessageInitShape<typeof CompleteTaskAttemptRequestSchema>["outcome"];

/** One replica of a service served from Node through the Queue API. */
export class QueueService {
  readonly replicaId = randomUUID().replaceAll("-", "");
  readonly options: Required<Omit<ServiceOptions, "description" | "inputSchema" | "retryPolicy">> &
    Pick<ServiceOptions, "description" | "inputSchema" | "retryPolicy">;
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
    const policy = o.retryPolicy ?? {};
    await mapped(() =>
      this.mesh.controlPlane.registerService({
        service: {
          name: this.serviceName,
          kind: o.kind,
          description: o.description ?? "",
          inputSchema: o.inputSchema,
          retryPolicy: {
            maxAttempts: policy.maxAttempts,
            initialBackoff: policy.initialBackoffMs === undefined ? undefined : durationFromMs(policy.initialBackoffMs),
            maxBackoff: policy.maxBackoffMs === undefined ? undefined : durationFromMs(policy.maxBackoffMs),
            backoffMultiplier: policy.backoffMultiplier,
            retryableErrorTypes: policy.retryableErrorTypes,
          },
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
        replicaId: this.replicaId,
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

  private async handle(message: QueueMessage): Promise<void> {
    // The group's ack wait, not necessarily the one asked for (replicas running set it).
    const ackWaitMs = message.ackWait ? durationMs(message.ackWait) : this.options.ackWaitMs;
    const extend = setInterval(
      () =>
        void this.mesh.queue
          .extendMessages({ topic: this.topic, ackIds: [message.ackId] })
          .catch(() => undefined),
      ackWaitMs / 3,
    );
    await this.slot(); // never rejects: it only waits for release()
    try {
      if (this.cancelRunning.signal.aborted) {
        // Stopping before it began: not an attempt, hand the message back untouched.
        await mapped(() => this.mesh.queue.nakMessages({ topic: this.topic, ackIds: [message.ackId] }));
      } else {
        await this.attempt(message);
      }
    } finally {
      clearInterval(extend);
      this.release();
    }
  }

  private async attempt(message: QueueMessage): Promise<void> {
    const envelope = message.envelope;
    if (envelope?.payload.case !== "taskAssignment") {
      this.options.log(`service ${this.serviceName}: message ${message.sequence} is not a task; dropped`);
      await mapped(() => this.mesh.queue.ackMessages({ topic: this.topic, ackIds: [message.ackId] }));
      return;
    }
    const assigned = envelope.payload.value.task!;
    const name = assigned.name;
    if (assigned.service !== this.options.name) {
      // The control plane publishes each task on its own service's topic only: one
      // of another service here was forged or misrouted. Never run it, never report
      // on it (the control plane refuses reports on another service's task anyway).
      this.options.log(`task ${name}: of service ${assigned.service}, not ${this.options.name}; refused`);
      await mapped(() => this.mesh.queue.ackMessages({ topic: this.topic, ackIds: [message.ackId] }));
      return;
    }
    const begun = await mapped(() =>
      this.mesh.queue.beginTaskAttempt({ name, ackId: message.ackId, replicaId: this.replicaId }),
    );
    if (!begun.run) return; // the control plane has settled the delivery
    const task = begun.task!;
    if (task.service !== this.options.name) {
      // The record is what counts: run only a task the mesh says is ours.
      this.options.log(`task ${name}: recorded for service ${task.service}, not ${this.options.name}; refused`);
      return;
    }
    const delivery = { name, ackId: message.ackId, attempt: begun.attempt };
    const cancelled = new AbortController();
    const signals = [this.cancelRunning.signal, cancelled.signal];
    const deadlineMs = task.deadline ? timestampMs(task.deadline) : undefined;
    if (deadlineMs !== undefined && deadlineMs - Date.now() < MAX_TIMER_MS) {
      signals.push(AbortSignal.timeout(Math.max(Math.ceil(deadlineMs - Date.now()), 0)));
    }
    const signal = AbortSignal.any(signals);
    const context: TaskContext = {
      task,
      attempt: begun.attempt,
      signal,
      progress: async (type, payload) => {
        let reply;
        try {
          reply = await mapped(() =>
            this.mesh.queue.reportTaskEvent({ ...delivery, type, payload: fromJson(ValueSchema, payload) }),
          );
        } catch (err) {
          throw new ReportError(err);
        }
        if (reply.cancelRequested) cancelled.abort(new CancelledError());
      },
    };
    let outcome: Outcome;
    try {
      const result = await abortable(this.options.handler(task.input ?? {}, context), signal);
      outcome = { case: "result", value: fromJson(ValueSchema, result) };
    } catch (err) {
      outcome = this.outcomeOf(err);
    }
    try {
      await mapped(() => this.mesh.queue.completeTaskAttempt({ ...delivery, outcome }));
    } catch (err) {
      // Unreported, the delivery comes back after ack_wait and the next attempt starts.
      this.options.log(`task ${name}: attempt ${begun.attempt} not reported: ${meshError(err).message}`);
    }
  }

  /** How a run that threw ended, as CompleteTaskAttempt takes it. */
  private outcomeOf(err: unknown): Outcome {
    const interruption = (value: AttemptInterruption): Outcome => ({ case: "interruption", value });
    if (this.cancelRunning.signal.aborted) return interruption(AttemptInterruption.REPLICA_STOPPING);
    if (err instanceof DeadlineError) return interruption(AttemptInterruption.DEADLINE_EXCEEDED);
    if (err instanceof CancelledError) return interruption(AttemptInterruption.CANCELLED);
    if (err instanceof ReportError) {
      this.options.log(`task attempt handed back: ${err.message}`);
      return interruption(AttemptInterruption.REPLICA_FAILED);
    }
    const error = err instanceof Error ? err : new Error(String(err));
    this.options.log(`task attempt failed: ${error.name}: ${error.message}`);
    return {
      case: "failure",
      value: { errorType: error.name, message: error.message, retryable: error instanceof RetryableError },
    };
  }
}

/** The handler's deadline passed. */
class DeadlineError extends Error {}

/** The task was cancelled. */
class CancelledError extends Error {}

/** Reporting an event failed: the mesh's fault, not the handler's. */
class ReportError extends Error {
  constructor(cause: unknown) {
    super(`reporting an event failed: ${meshError(cause).message}`, { cause });
  }
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
