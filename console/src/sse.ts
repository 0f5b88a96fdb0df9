// A task's event stream over SSE, read with fetch (an EventSource cannot send the
// Authorization header). It resumes after a dropped connection with Last-Event-ID,
// which the gateway turns into after_sequence: no event is lost or repeated.

import { API_BASE, ApiError, FINAL_STATES, errorOf, headers, type Status, type TaskEvent } from "./api.js";

export interface StreamHandlers {
  /** Each event once, in sequence order. */
  onEvent(event: TaskEvent): void;
  /** The connection is up (again), or it dropped and will be retried. */
  onConnection?(connected: boolean): void;
  /** The stream ended with an error item, or the request was refused. */
  onError?(status: Status): void;
}

const RETRY_MS = [250, 500, 1000, 2000, 4000];

/** Follows `sessions/S/tasks/T` until its final event or until `signal` aborts. */
export async function followTask(task: string, handlers: StreamHandlers, signal: AbortSignal): Promise<void> {
  let last = 0n; // the highest sequence seen
  let failures = 0;
  while (!signal.aborted) {
    try {
      const extra: Record<string, string> = { Accept: "text/event-stream" };
      if (last > 0n) extra["Last-Event-ID"] = last.toString();
      const resp = await fetch(`${API_BASE}/v1/${task}:streamEvents`, { headers: headers(extra), signal });
      if (!resp.ok || !resp.body) {
        const err = await errorOf(resp);
        handlers.onError?.(err.status);
        if (resp.status >= 500) throw err; // the gateway or the mesh restarts: retry
        return;
      }
      handlers.onConnection?.(true);
      failures = 0;
      for await (const frame of frames(resp.body, signal)) {
        if (frame.event === "error") {
          const status = JSON.parse(frame.data) as Status;
          handlers.onError?.(status);
          if (status.code === 14) throw new ApiError(503, status); // UNAVAILABLE: resume
          return;
        }
        const event = (JSON.parse(frame.data) as { event: TaskEvent }).event;
        const sequence = BigInt(event.sequence);
        if (sequence <= last) continue;
        last = sequence;
        handlers.onEvent(event);
        if (FINAL_STATES.has(event.state)) return;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.httpStatus < 500) return;
    }
    // The connection dropped before the final event: resume after `last`.
    handlers.onConnection?.(false);
    const delay = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)] ?? 4000;
    failures += 1;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, delay);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

interface Frame {
  event: string;
  data: string;
}

/** The SSE frames of a body (text/event-stream as the HTML standard parses it). */
async function* frames(body: ReadableStream<Uint8Array>, signal: AbortSignal): AsyncGenerator<Frame> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const onAbort = (): void => void reader.cancel().catch(() => undefined);
  signal.addEventListener("abort", onAbort);
  let buffer = "";
  let event = "";
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          if (data.length) yield { event: event || "message", data: data.join("\n") };
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // a heartbeat comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const raw = colon < 0 ? "" : line.slice(colon + 1);
        const text = raw.startsWith(" ") ? raw.slice(1) : raw;
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}
