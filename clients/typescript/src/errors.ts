/**
 * Every error the TypeScript client throws, mirroring the Python client's tree
 * (python/llama_mesh/errors.py), so code in both languages catches the same things.
 *
 *     MeshError                       base of everything below
 *     ├── InvalidArgumentError        INVALID_ARGUMENT: the request is malformed
 *     ├── NotFoundError               NOT_FOUND: no such service, session or task
 *     ├── AlreadyExistsError          ALREADY_EXISTS
 *     ├── FailedPreconditionError     FAILED_PRECONDITION: not allowed in the current state
 *     ├── ResourceExhaustedError      RESOURCE_EXHAUSTED
 *     ├── DeadlineExceededError       DEADLINE_EXCEEDED: the call ran out of time
 *     ├── UnavailableError            UNAVAILABLE: the control plane cannot be reached
 *     ├── InternalError               INTERNAL / UNKNOWN / anything else
 *     └── TaskError                   a task ended without a result (carries the Task)
 *         ├── TaskFailedError         FAILED: the workflow raised (errorType, message)
 *         └── TaskCancelledError      CANCELLED
 *
 *     try {
 *       await session.run("nope", {});
 *     } catch (err) {
 *       if (err instanceof NotFoundError) console.log("no such service");
 *       else throw err;
 *     }
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import type { Status } from "./gen/google/rpc/status_pb.js";
import type { Task } from "./gen/llama_mesh/v1/resources_pb.js";

/** The gRPC name of a status code: Code.NotFound -> "NOT_FOUND". */
export function codeName(code: Code): string {
  return (Code[code] ?? "UNKNOWN").replace(/(?<=[a-z])(?=[A-Z])/g, "_").toUpperCase().replace("CANCELED", "CANCELLED");
}

/** Base of every llama-mesh error; `code` is the gRPC status code. */
export class MeshError extends Error {
  readonly code: Code;

  constructor(message: string, code: Code = Code.Unknown) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The request is malformed; the message says which field and why. */
export class InvalidArgumentError extends MeshError {}
/** The named service, session or task does not exist. */
export class NotFoundError extends MeshError {}
/** A resource with that name exists already. */
export class AlreadyExistsError extends MeshError {}
/** The request is not allowed in the resource's current state. */
export class FailedPreconditionError extends MeshError {}
/** A limit was reached. */
export class ResourceExhaustedError extends MeshError {}
/** The call's deadline passed before it finished. */
export class DeadlineExceededError extends MeshError {}
/** The control plane (or the queue behind it) cannot be reached: retry. */
export class UnavailableError extends MeshError {}
/** A bug, or a status code the client does not map; the message says more. */
export class InternalError extends MeshError {}

/** A task ended without a result; `task` is the finished Task. */
export class TaskError extends MeshError {
  readonly task: Task;

  constructor(message: string, task: Task, code: Code) {
    super(message, code);
    this.task = task;
  }
}

/** The task FAILED; `errorType` is the exception type name the service reported. */
export class TaskFailedError extends TaskError {
  readonly errorType: string;

  constructor(message: string, task: Task, errorType: string, code: Code) {
    super(message, task, code);
    this.errorType = errorType;
  }
}

/** The task was CANCELLED. */
export class TaskCancelledError extends TaskError {}

const BY_CODE: Partial<Record<Code, new (message: string, code: Code) => MeshError>> = {
  [Code.InvalidArgument]: InvalidArgumentError,
  [Code.NotFound]: NotFoundError,
  [Code.AlreadyExists]: AlreadyExistsError,
  [Code.FailedPrecondition]: FailedPreconditionError,
  [Code.ResourceExhausted]: ResourceExhaustedError,
  [Code.DeadlineExceeded]: DeadlineExceededError,
  [Code.Unavailable]: UnavailableError,
};

/** The MeshError for any error a call threw (ConnectError or not). */
export function meshError(err: unknown): MeshError {
  if (err instanceof MeshError) return err;
  const connect = ConnectError.from(err);
  const Cls = BY_CODE[connect.code] ?? InternalError;
  return new Cls(connect.rawMessage, connect.code);
}

/** Run `call`, turning what it throws into a MeshError. */
export async function mapped<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw meshError(err);
  }
}

const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";
const DEBUG_INFO = "type.googleapis.com/google.rpc.DebugInfo";
/** google.rpc.ErrorInfo's domain for the errors of llama-mesh tasks. */
export const DOMAIN = "llama-mesh";

/**
 * The exception type name a task error carries (its google.rpc.ErrorInfo reason),
 * or "". ErrorInfo is read from the wire by hand: its two string fields are all we
 * need, and it keeps google/rpc/error_details.proto out of the generated code.
 */
export function errorType(status: Status | undefined): string {
  for (const detail of status?.details ?? []) {
    if (detail.typeUrl !== ERROR_INFO) continue;
    const reader = new BinaryReader(detail.value);
    let reason = "";
    let domain = "";
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field === 1) reason = reader.string();
      else if (field === 2) domain = reader.string();
      else reader.skip(wireType);
    }
    if (domain === DOMAIN) return reason;
  }
  return "";
}

/**
 * A detail of a task error (an Any) in the canonical protobuf JSON form: a
 * google.rpc.ErrorInfo as `{"@type", "reason", "domain"}`, a google.rpc.DebugInfo
 * (the workflow's traceback) as `{"@type", "stackEntries", "detail"}`, read from the
 * wire by hand like ErrorInfo; any other as its type alone.
 */
export function detailJson(detail: { typeUrl: string; value: Uint8Array }): Record<string, unknown> {
  const reader = new BinaryReader(detail.value);
  if (detail.typeUrl === ERROR_INFO) {
    let reason = "";
    let domain = "";
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field === 1) reason = reader.string();
      else if (field === 2) domain = reader.string();
      else reader.skip(wireType);
    }
    return { "@type": detail.typeUrl, reason, domain };
  }
  if (detail.typeUrl === DEBUG_INFO) {
    const stackEntries: string[] = [];
    let text = "";
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field === 1) stackEntries.push(reader.string());
      else if (field === 2) text = reader.string();
      else reader.skip(wireType);
    }
    const json: Record<string, unknown> = { "@type": detail.typeUrl };
    if (stackEntries.length) json.stackEntries = stackEntries;
    if (text) json.detail = text;
    return json;
  }
  return { "@type": detail.typeUrl };
}
