// The REST API of the gateway, as any client sees it: JSON in and out, a bearer token
// in every request, google.rpc.Status bodies on errors. Only public routes are used.

export interface Status {
  code: number;
  message: string;
  details?: Array<Record<string, unknown>>;
}

export interface Replica {
  replicaId: string;
  state: string;
  runningTaskCount: number;
  maxConcurrency: number;
  runtime: string;
}

export interface Service {
  name: string;
  kind: string;
  description: string;
  replicas: Replica[];
  acceptedEventTypes: string[];
  inputSchema?: Record<string, unknown>;
}

export interface TokenUsage {
  promptTokens?: string;
  completionTokens?: string;
  totalTokens?: string;
  llmCalls?: string;
}

export interface Session {
  name: string;
  labels: Record<string, string>;
  createTime?: string;
  updateTime?: string;
  tokenBudget?: string;
  usage?: TokenUsage;
}

export interface InputRequest {
  sequence: string;
  eventType: string;
  payload?: unknown;
  acceptedEventTypes: string[];
}

export interface Task {
  name: string;
  service: string;
  input?: Record<string, unknown>;
  state: string;
  result?: unknown;
  error?: Status;
  attemptCount: number;
  parentTask: string;
  inputRequest?: InputRequest;
  replicaId: string;
  cancelRequested: boolean;
  labels: Record<string, string>;
  createTime?: string;
  startTime?: string;
  endTime?: string;
  updateTime?: string;
  usage?: TokenUsage;
}

export interface TaskEvent {
  task: string;
  sequence: string;
  type: string;
  payload?: unknown;
  state: string;
  error?: Status;
  attempt: number;
  createTime?: string;
  usage?: TokenUsage;
}

export const FINAL_STATES = new Set(["TASK_STATE_SUCCEEDED", "TASK_STATE_FAILED", "TASK_STATE_CANCELLED"]);

/** An error answer of the API: its HTTP status and google.rpc.Status. */
export class ApiError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly status: Status,
  ) {
    super(status.message || `HTTP ${httpStatus}`);
  }
}

const TOKEN_KEY = "llama-mesh-console-token";

/** The token the console signs in with; kept for the browser tab only. */
export const auth = {
  get token(): string | null {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  signIn(token: string): void {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  signOut(): void {
    sessionStorage.removeItem(TOKEN_KEY);
  },
  signedIn(): boolean {
    return sessionStorage.getItem(TOKEN_KEY) !== null;
  },
};

/** Called when the API answers 401: the token is wrong or was revoked. */
export let onUnauthenticated: (err: ApiError) => void = () => undefined;
export function setOnUnauthenticated(fn: (err: ApiError) => void): void {
  onUnauthenticated = fn;
}

/** The API's base URL: the gateway that served the console. */
export const API_BASE = new URL("..", document.baseURI).href.replace(/\/$/, "");

export function headers(extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { ...extra };
  const token = auth.token;
  if (token) h["Authorization"] = `Bearer ${token}`;
  return h;
}

export async function errorOf(resp: Response): Promise<ApiError> {
  let status: Status = { code: 2, message: `HTTP ${resp.status} ${resp.statusText}` };
  try {
    const body: unknown = await resp.json();
    if (body && typeof body === "object" && "message" in body) status = body as Status;
  } catch {
    // Not JSON: keep the HTTP status line.
  }
  const err = new ApiError(resp.status, status);
  if (resp.status === 401) onUnauthenticated(err);
  return err;
}

export async function call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const init: RequestInit = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  if (signal) init.signal = signal;
  const resp = await fetch(API_BASE + path, init);
  if (!resp.ok) throw await errorOf(resp);
  return (await resp.json()) as T;
}

export function query(params: Record<string, string | string[] | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) q.append(k, String(one));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export interface Page<T> {
  items: T[];
  nextPageToken: string;
}

export async function listServices(): Promise<Service[]> {
  const all: Service[] = [];
  let token = "";
  do {
    const page = await call<{ services: Service[]; nextPageToken: string }>(
      "GET",
      `/v1/services${query({ pageSize: 100, pageToken: token })}`,
    );
    all.push(...page.services);
    token = page.nextPageToken;
  } while (token);
  return all;
}

export async function listSessions(pageToken: string, pageSize = 25): Promise<Page<Session>> {
  const page = await call<{ sessions: Session[]; nextPageToken: string }>(
    "GET",
    `/v1/sessions${query({ pageSize, pageToken })}`,
  );
  return { items: page.sessions, nextPageToken: page.nextPageToken };
}

export interface TaskFilter {
  session: string; // a session id, or "-" for every session
  service?: string;
  states?: string[];
}

export async function listTasks(filter: TaskFilter, pageToken: string, pageSize = 25): Promise<Page<Task>> {
  const page = await call<{ tasks: Task[]; nextPageToken: string }>(
    "GET",
    `/v1/sessions/${encodeURIComponent(filter.session)}/tasks${query({
      service: filter.service,
      states: filter.states,
      pageSize,
      pageToken,
    })}`,
  );
  return { items: page.tasks, nextPageToken: page.nextPageToken };
}

export async function allTasks(filter: TaskFilter): Promise<Task[]> {
  const all: Task[] = [];
  let token = "";
  do {
    const page = await listTasks(filter, token, 100);
    all.push(...page.items);
    token = page.nextPageToken;
  } while (token);
  return all;
}

// GetTask, GetSession and CreateTask answer with the resource itself (response_body).
export async function getTask(name: string): Promise<Task> {
  return call<Task>("GET", `/v1/${name}`);
}

export async function getSession(name: string): Promise<Session> {
  return call<Session>("GET", `/v1/${name}`);
}

export async function cancelTask(name: string, reason: string): Promise<Task> {
  return (await call<{ task: Task }>("POST", `/v1/${name}:cancel`, { reason })).task;
}

export async function sendTaskEvent(name: string, type: string, payload: unknown): Promise<Task> {
  return (await call<{ task: Task }>("POST", `/v1/${name}:sendEvent`, { type, payload })).task;
}

export async function createTask(session: string, service: string, input: Record<string, unknown>): Promise<Task> {
  return call<Task>("POST", `/v1/${session}/tasks`, { service, input });
}

export async function callerIdentity(): Promise<Record<string, unknown>> {
  return call<Record<string, unknown>>("GET", "/v1/callerIdentity");
}

/** `sessions/S/tasks/T` -> `sessions/S`. */
export function sessionOf(task: string): string {
  return task.split("/").slice(0, 2).join("/");
}

export function shortId(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1);
}

export function shortEnum(value: string | undefined, prefix: string): string {
  return (value ?? "").replace(prefix, "");
}
