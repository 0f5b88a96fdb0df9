// The REST API of the gateway, as any client sees it: JSON in and out, a bearer token
// in every request, google.rpc.Status bodies on errors. Only public routes are used.
export const FINAL_STATES = new Set(["TASK_STATE_SUCCEEDED", "TASK_STATE_FAILED", "TASK_STATE_CANCELLED"]);
/** An error answer of the API: its HTTP status and google.rpc.Status. */
export class ApiError extends Error {
    httpStatus;
    status;
    constructor(httpStatus, status) {
        super(status.message || `HTTP ${httpStatus}`);
        this.httpStatus = httpStatus;
        this.status = status;
    }
}
const TOKEN_KEY = "llama-mesh-console-token";
/** The token the console signs in with; kept for the browser tab only. */
export const auth = {
    get token() {
        return sessionStorage.getItem(TOKEN_KEY);
    },
    signIn(token) {
        sessionStorage.setItem(TOKEN_KEY, token);
    },
    signOut() {
        sessionStorage.removeItem(TOKEN_KEY);
    },
    signedIn() {
        return sessionStorage.getItem(TOKEN_KEY) !== null;
    },
};
/** Called when the API answers 401: the token is wrong or was revoked. */
export let onUnauthenticated = () => undefined;
export function setOnUnauthenticated(fn) {
    onUnauthenticated = fn;
}
/** The API's base URL: the gateway that served the console. */
export const API_BASE = new URL("..", document.baseURI).href.replace(/\/$/, "");
export function headers(extra = {}) {
    const h = { ...extra };
    const token = auth.token;
    if (token)
        h["Authorization"] = `Bearer ${token}`;
    return h;
}
export async function errorOf(resp) {
    let status = { code: 2, message: `HTTP ${resp.status} ${resp.statusText}` };
    try {
        const body = await resp.json();
        if (body && typeof body === "object" && "message" in body)
            status = body;
    }
    catch {
        // Not JSON: keep the HTTP status line.
    }
    const err = new ApiError(resp.status, status);
    if (resp.status === 401)
        onUnauthenticated(err);
    return err;
}
export async function call(method, path, body, signal) {
    const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
    if (body !== undefined)
        init.body = JSON.stringify(body);
    if (signal)
        init.signal = signal;
    const resp = await fetch(API_BASE + path, init);
    if (!resp.ok)
        throw await errorOf(resp);
    return (await resp.json());
}
export function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
        if (v === undefined || v === "")
            continue;
        for (const one of Array.isArray(v) ? v : [v])
            q.append(k, String(one));
    }
    const s = q.toString();
    return s ? `?${s}` : "";
}
export async function listServices() {
    const all = [];
    let token = "";
    do {
        const page = await call("GET", `/v1/services${query({ pageSize: 100, pageToken: token })}`);
        all.push(...page.services);
        token = page.nextPageToken;
    } while (token);
    return all;
}
export async function listSessions(pageToken, pageSize = 25) {
    const page = await call("GET", `/v1/sessions${query({ pageSize, pageToken })}`);
    return { items: page.sessions, nextPageToken: page.nextPageToken };
}
export async function listTasks(filter, pageToken, pageSize = 25) {
    const page = await call("GET", `/v1/sessions/${encodeURIComponent(filter.session)}/tasks${query({
        service: filter.service,
        states: filter.states,
        pageSize,
        pageToken,
    })}`);
    return { items: page.tasks, nextPageToken: page.nextPageToken };
}
export async function allTasks(filter) {
    const all = [];
    let token = "";
    do {
        const page = await listTasks(filter, token, 100);
        all.push(...page.items);
        token = page.nextPageToken;
    } while (token);
    return all;
}
// GetTask, GetSession and CreateTask answer with the resource itself (response_body).
export async function getTask(name) {
    return call("GET", `/v1/${name}`);
}
export async function getSession(name) {
    return call("GET", `/v1/${name}`);
}
export async function cancelTask(name, reason) {
    return (await call("POST", `/v1/${name}:cancel`, { reason })).task;
}
export async function sendTaskEvent(name, type, payload) {
    return (await call("POST", `/v1/${name}:sendEvent`, { type, payload })).task;
}
export async function createTask(session, service, input) {
    return call("POST", `/v1/${session}/tasks`, { service, input });
}
export async function callerIdentity() {
    return call("GET", "/v1/callerIdentity");
}
/** `sessions/S/tasks/T` -> `sessions/S`. */
export function sessionOf(task) {
    return task.split("/").slice(0, 2).join("/");
}
export function shortId(name) {
    return name.slice(name.lastIndexOf("/") + 1);
}
export function shortEnum(value, prefix) {
    return (value ?? "").replace(prefix, "");
}
