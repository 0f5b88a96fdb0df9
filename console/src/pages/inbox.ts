// Inbox: every task, in every session, that waits for a person; each with a form
// generated from the JSON Schema of the event it expects. Answering sends that event
// (SendTaskEvent); the task continues and leaves the inbox.

import { allTasks, sendTaskEvent, sessionOf, shortId, type Task } from "../api.js";
import { clear, errorBox, h, json, taskHref, time } from "../dom.js";
import { every } from "../live.js";
import { schemaFields, type Schema } from "../schema_form.js";

/** What a person answers with when the question names nothing else. */
export const HUMAN_RESPONSE_EVENT = "HumanResponseEvent";
const HUMAN_RESPONSE_SCHEMA: Schema = {
  type: "object",
  properties: { response: { type: "string", title: "Answer", format: "textarea" } },
  required: ["response"],
};

interface Question {
  prompt: string | null;
  rest: Record<string, unknown> | null;
  eventType: string;
  schema: Schema;
}

/**
 * What a waiting task asks. Its InputRequiredEvent's payload may name the event it
 * expects (`response_event`) and that event's JSON Schema (`response_schema`);
 * otherwise the answer is a HumanResponseEvent with a `response` text, which is what
 * human services and `ctx.wait_for_event(HumanResponseEvent, ...)` wait for.
 */
export function questionOf(task: Task): Question {
  const payload = task.inputRequest?.payload;
  const fields = payload && typeof payload === "object" && !Array.isArray(payload) ? { ...(payload as Record<string, unknown>) } : {};
  const prompt = typeof fields["prefix"] === "string" ? fields["prefix"] : null;
  const schema = fields["response_schema"];
  const eventType = typeof fields["response_event"] === "string" ? fields["response_event"] : HUMAN_RESPONSE_EVENT;
  delete fields["prefix"];
  delete fields["response_schema"];
  delete fields["response_event"];
  return {
    prompt,
    rest: Object.keys(fields).length ? fields : null,
    eventType,
    schema: schema && typeof schema === "object" && !Array.isArray(schema) ? (schema as Schema) : HUMAN_RESPONSE_SCHEMA,
  };
}

/** The answer form of a waiting task; `onAnswered` runs once the event is accepted. */
export function answerForm(task: Task, onAnswered: (task: Task) => void): HTMLFormElement {
  const question = questionOf(task);
  const [fields, read] = schemaFields(question.schema);
  const feedback = h("div", { "aria-live": "assertive" });
  const submit = h("button", { type: "submit" }, `Send ${question.eventType}`);
  const form = h(
    "form",
    { class: "answer", "data-task": task.name, "aria-label": `Answer ${shortId(task.name)}` },
    fields,
    h("div", { class: "toolbar" }, submit),
    feedback,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    let payload: Record<string, unknown>;
    try {
      payload = read();
    } catch (err) {
      clear(feedback, errorBox(err));
      return;
    }
    submit.disabled = true;
    sendTaskEvent(task.name, question.eventType, payload)
      .then((updated) => onAnswered(updated))
      .catch((err: unknown) => {
        submit.disabled = false;
        clear(feedback, errorBox(err));
      });
  });
  return form;
}

function item(task: Task, onAnswered: () => void): HTMLElement {
  const question = questionOf(task);
  const session = sessionOf(task.name);
  return h(
    "article",
    { class: "card", "data-task": task.name },
    h(
      "h2",
      {},
      h("a", { href: taskHref(task.name) }, `${task.service} · ${shortId(task.name)}`),
    ),
    h(
      "p",
      { class: "muted" },
      `waiting since ${time(task.updateTime)} · session `,
      h("a", { href: `#/${session}` }, shortId(session)),
      task.parentTask ? [" · asked by ", h("a", { href: taskHref(task.parentTask) }, shortId(task.parentTask))] : null,
    ),
    question.prompt ? h("pre", { class: "prompt" }, question.prompt) : null,
    question.rest && !question.prompt ? h("pre", {}, json(question.rest)) : null,
    answerForm(task, onAnswered),
  );
}

export async function inboxPage(root: HTMLElement, signal: AbortSignal): Promise<void> {
  const list = h("div", { id: "inbox" });
  const status = h("p", { class: "muted", "aria-live": "polite" });
  clear(root, h("h1", {}, "Inbox"), status, list);
  const shown = new Map<string, HTMLElement>();
  const load = async (): Promise<void> => {
    try {
      const waiting = await allTasks({ session: "-", states: ["TASK_STATE_WAITING_FOR_INPUT"] });
      waiting.sort((a, b) => (a.updateTime ?? "").localeCompare(b.updateTime ?? ""));
      const names = new Set(waiting.map((t) => t.name));
      for (const [name, el] of shown) {
        if (!names.has(name)) {
          el.remove();
          shown.delete(name);
        }
      }
      // New questions are added; the forms shown keep what a person has typed.
      for (const task of waiting) {
        if (shown.has(task.name)) continue;
        const el = item(task, () => {
          el.remove();
          shown.delete(task.name);
          status.textContent = `Answered ${shortId(task.name)}.`;
        });
        shown.set(task.name, el);
        list.append(el);
      }
      if (!shown.size) clear(list, h("p", { id: "inbox-empty" }, "Nothing waits for an answer."));
      else list.querySelector("#inbox-empty")?.remove();
    } catch (err) {
      clear(status, errorBox(err));
    }
  };
  await every(signal, load);
}
