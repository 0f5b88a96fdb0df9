/**
 * A small typed wrapper over the generated llama-mesh client (src/gen), for Node.
 *
 *     import { MeshClient } from "./mesh.js";
 *
 *     const mesh = new MeshClient("127.0.0.1:50051");
 *     const session = await mesh.createSession();
 *     console.log(await session.run("echo", { arg1: "hello" })); // "hello_result"
 *     mesh.close();
 *
 * Everything the wrapper does not cover is one call away on `mesh.controlPlane`
 * and `mesh.queue`, the generated clients of ControlPlaneAPI and QueueAPI. Calls
 * throw the MeshError subclass of their gRPC status code (errors.ts).
 */
import { create, createRegistry, toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { durationFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { randomUUID } from "node:crypto";

import {
  file_llama_mesh_v1_control_plane,
  ControlPlaneAPI,
} from "./gen/llama_mesh/v1/control_plane_pb.js";
import { file_llama_mesh_v1_queue, QueueAPI } from "./gen/llama_mesh/v1/queue_pb.js";
import {
  file_llama_mesh_v1_resources,
  TaskSchema,
  TaskState,
  type Session,
  type Task,
  type TaskEvent,
} from "./gen/llama_mesh/v1/resources_pb.js";
import {
  detailJson,
  errorType,
  mapped,
  meshError,
  MeshError,
  TaskCancelledError,
  TaskFailedError,
} from "./errors.js";

export * from "./errors.js";
export { TaskState, type Session, type Task, type TaskEvent };

/** Types of the mesh's protos, for toJson/fromJson of messages that hold an Any. */
export const registry = createRegistry(
  file_llama_mesh_v1_resources,
  file_llama_mesh_v1_control_plane,
  file_llama_mesh_v1_queue,
);

const FINAL = new Set([TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED]);

/** Whether a task (or event) state is final. */
export function isFinal(state: TaskState): boolean {
  return FINAL.has(state);
}

/** "TASK_STATE_SUCCEEDED" -> "SUCCEEDED". */
export function stateName(state: TaskState): string {
  return TaskState[state] ?? String(state);
}

/** A JSON value (google.protobuf.Value) as plain JSON; undefined stays undefined. */
export function jsonOf(value: TaskEvent["payload"]): JsonValue | undefined {
  return value === undefined ? undefined : toJson(ValueSchema, value);
}

/**
 * A Task in the canonical protobuf JSON form, the same JSON the Python client
 * (`json_format.MessageToJson`), grpcurl, buf curl, the REST gateway and Go's
 * protojson print. Task errors carry a google.rpc.ErrorInfo (and a DebugInfo, the
 * traceback) in Anys; they are written as the others write them (detailJson).
 */
export function taskToJson(task: Task): JsonObject {
  const details = task.error?.details ?? [];
  const copy = create(TaskSchema, task);
  if (copy.error) copy.error = { ...copy.error, details: [] };
  const json = toJson(TaskSchema, copy, { registry }) as JsonObject;
  if (details.length && json.error && typeof json.error === "object") {
    (json.error as JsonObject).details = details.map((d) => detailJson(d) as JsonObject);
  }
  return json;
}

/** One event of a task, as a client sees it (like the Python client's StreamedEvent). */
export interface StreamedEvent {
  sequence: number;
  type: string;
  payload: JsonValue | undefined;
  /** "RUNNING", "WAITING_FOR_INPUT", "SUCCEEDED", ... */
  state: string;
  attempt: number;
  /** For a FAILED or CANCELLED final event: the error type and message. */
  errorType: string;
  errorMessage: string;
  final: boolean;
}

function streamed(event: TaskEvent): StreamedEvent {
  return {
    sequence: Number(event.sequence),
    type: event.type,
    payload: jsonOf(event.payload),
    state: stateName(event.state),
    attempt: event.attempt,
    errorType: errorType(event.error),
    errorMessage: event.error?.message ?? "",
    final: isFinal(event.state),
  };
}

/** The result of a finished task, or the typed error it ended with. */
export function taskResult(task: Task): JsonValue | undefined {
  if (task.state === TaskState.SUCCEEDED) return jsonOf(task.result);
  const message = task.error?.message || stateName(task.state);
  if (task.state === TaskState.CANCELLED) {
    throw new TaskCancelledError(`task ${task.name} was cancelled: ${message}`, task, task.error?.code ?? 1);
  }
  if (task.state === TaskState.FAILED) {
    const kind = errorType(task.error);
    throw new TaskFailedError(`task ${task.name} failed: ${message}`, task, kind, task.error?.code ?? 2);
  }
  throw new MeshError(`task ${task.name} has not finished (${stateName(task.state)})`);
}

/** Options of a task. */
export interface TaskOptions {
  /** Run time allowed from creation, in milliseconds. */
  timeoutMs?: number;
  /** Idempotency key (a random one by default). */
  requestId?: string;
  /** Attempts in all, including the first. */
  maxAttempts?: number;
  labels?: Record<string, string>;
}

/** Client of a llama-mesh control plane at `address` ("host:port", plaintext HTTP/2). */
export class MeshClient {
  readonly address: string;
  /** The generated ControlPlaneAPI client. */
  readonly controlPlane: Client<typeof ControlPlaneAPI>;
  /** The generated QueueAPI client. */
  readonly queue: Client<typeof QueueAPI>;
  private readonly sessions: Http2SessionManager;

  /**
   * `token` (an API key of the mesh or a JWT) is sent as `authorization: Bearer` on
   * every call; it defaults to the LLAMA_MESH_TOKEN environment variable, as in the
   * Python client.
   */
  constructor(address: string, token: string | undefined = process.env.LLAMA_MESH_TOKEN) {
    this.address = address;
    const baseUrl = `http://${address}`;
    this.sessions = new Http2SessionManager(baseUrl);
    const interceptors: Interceptor[] = token
      ? [(next) => (request) => {
          request.header.set("authorization", `Bearer ${token}`);
          return next(request);
        }]
      : [];
    const transport = createGrpcTransport({
      baseUrl,
      sessionManager: this.sessions,
      interceptors,
    });
    this.controlPlane = createClient(ControlPlaneAPI, transport);
    this.queue = createClient(QueueAPI, transport);
  }

  /** Close the HTTP/2 connection (calls in flight fail). */
  close(): void {
    this.sessions.abort();
  }

  /** Create a session (with `sessionId`: get-or-create that one). */
  async createSession(sessionId = ""): Promise<MeshSession> {
    const response = await mapped(() =>
      this.controlPlane.createSession({ sessionId, allowExisting: sessionId !== "" }),
    );
    return new MeshSession(this, response.session!);
  }

  async getTask(name: string): Promise<Task> {
    return (await mapped(() => this.controlPlane.getTask({ name }))).task!;
  }

  /** Wait until the task finishes and return it. */
  async waitTask(name: string): Promise<Task> {
    for (;;) {
      const task = (await mapped(() => this.controlPlane.waitTask({ name }))).task!;
      if (isFinal(task.state)) return task;
    }
  }

  /** Cancel a task; false if it had finished already. */
  async cancelTask(name: string, reason = ""): Promise<boolean> {
    const response = await mapped(() => this.controlPlane.cancelTask({ name, reason }));
    return !response.alreadyFinished;
  }

  /** Send an event into a task that waits for input (human in the loop). */
  async sendEvent(name: string, type: string, payload: JsonObject = {}): Promise<Task> {
    return (await mapped(() => this.controlPlane.sendTaskEvent({ name, type, payload }))).task!;
  }

  /** A task's events in order, ending with the final one; resumes after `afterSequence`. */
  async *events(name: string, afterSequence = 0): AsyncGenerator<StreamedEvent> {
    try {
      for await (const item of this.controlPlane.streamTaskEvents({
        name,
        afterSequence: BigInt(afterSequence),
      })) {
        const event = streamed(item.event!);
        yield event;
        if (event.final) return;
      }
    } catch (err) {
      throw meshError(err);
    }
  }
}

/** A session: workflow state carries from one run to the next within it. */
export class MeshSession {
  constructor(
    readonly client: MeshClient,
    readonly session: Session,
  ) {}

  get name(): string {
    return this.session.name;
  }

  private task(service: string, input: JsonObject, options: TaskOptions) {
    return {
      parent: this.name,
      requestId: options.requestId ?? randomUUID(),
      task: {
        service,
        input,
        labels: options.labels ?? {},
        timeout: options.timeoutMs === undefined ? undefined : durationFromMs(options.timeoutMs),
        retryPolicy:
          options.maxAttempts === undefined ? undefined : { maxAttempts: options.maxAttempts },
      },
    };
  }

  /** Queue a run of `service` and return at once with the PENDING task. */
  async createTask(service: string, input: JsonObject = {}, options: TaskOptions = {}): Promise<Task> {
    const request = this.task(service, input, options);
    return (await mapped(() => this.client.controlPlane.createTask(request))).task!;
  }

  /** Run `service` and return the finished task, whatever its state. */
  async runTask(service: string, input: JsonObject = {}, options: TaskOptions = {}): Promise<Task> {
    const request = this.task(service, input, options);
    return (await mapped(() => this.client.controlPlane.runTask(request))).task!;
  }

  /** Run `service` and return its result; TaskFailedError / TaskCancelledError otherwise. */
  async run(service: string, input: JsonObject = {}, options: TaskOptions = {}): Promise<JsonValue | undefined> {
    return taskResult(await this.runTask(service, input, options));
  }
}
