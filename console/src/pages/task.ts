// Task view: facts, input, result or error, child tasks, cancel, and the live timeline.

import {
  FINAL_STATES,
  allTasks,
  cancelTask,
  getTask,
  sessionOf,
  shortId,
  type Task,
  type TaskEvent,
} from "../api.js";
import { clear, errorBox, h, json, stateBadge, taskHref, time } from "../dom.js";
import { followTask } from "../sse.js";
import { statusView } from "../status.js";
import { answerForm } from "./inbox.js";

function facts(task: Task): HTMLElement {
  const session = sessionOf(task.name);
  const rows: Array<[string, Node | string]> = [
    ["Service", h("a", { href: `#/tasks?service=${encodeURIComponent(task.service)}` }, task.service || "(orchestrator)")],
    ["Session", h("a", { href: `#/${session}` }, shortId(session))],
    ["Attempts", String(task.attemptCount)],
    ["Replica", task.replicaId || "—"],
    ["Created", time(task.createTime)],
    ["Started", time(task.startTime) || "—"],
    ["Ended", time(task.endTime) || "—"],
  ];
  if (task.parentTask) rows.splice(2, 0, ["Parent", h("a", { href: taskHref(task.parentTask) }, shortId(task.parentTask))]);
  if (task.usage?.totalTokens && task.usage.totalTokens !== "0") rows.push(["Tokens", `${task.usage.totalTokens} in ${task.usage.llmCalls ?? 0} LLM calls`]);
  if (task.cancelRequested && !FINAL_STATES.has(task.state)) rows.push(["Cancel", "requested"]);
  return h("dl", { class: "facts" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function outcome(task: Task): HTMLElement | null {
  if (task.state === "TASK_STATE_SUCCEEDED") return h("section", { id: "result" }, h("h2", {}, "Result"), h("pre", {}, json(task.result)));
  if (task.error && (task.state === "TASK_STATE_FAILED" || task.state === "TASK_STATE_CANCELLED")) {
    return h("section", { id: "error" }, h("h2", {}, task.state === "TASK_STATE_FAILED" ? "Error" : "Cancelled"), statusView(task.error));
  }
  return null;
}

/** The task's descendants in its session, as nested lists with links. */
function childTree(task: Task, tasks: Task[]): HTMLElement | null {
  const byParent = new Map<string, Task[]>();
  for (const t of tasks) {
    if (!t.parentTask) continue;
    const list = byParent.get(t.parentTask) ?? [];
    list.push(t);
    byParent.set(t.parentTask, list);
  }
  const level = (parent: string, depth: number): HTMLElement | null => {
    const children = byParent.get(parent);
    if (!children?.length || depth > 20) return null;
    return h(
      "ul",
      { class: "tree" },
      children.map((c) =>
        h("li", { "data-task": c.name }, h("a", { href: taskHref(c.name) }, `${c.service} · ${shortId(c.name)}`), " ", stateBadge(c.state), level(c.name, depth + 1)),
      ),
    );
  };
  return level(task.name, 0);
}

function eventItem(event: TaskEvent): HTMLElement {
  const final = FINAL_STATES.has(event.state);
  const payload = event.payload === undefined || event.payload === null ? null : json(event.payload);
  return h(
    "li",
    { class: final ? "final" : "", "data-sequence": event.sequence, "data-type": event.type },
    h("span", { class: "seq" }, `#${event.sequence}`),
    h("span", { class: "type" }, event.type),
    event.state && event.state !== "TASK_STATE_UNSPECIFIED" ? stateBadge(event.state) : null,
    h("span", { class: "muted" }, ` attempt ${event.attempt} · ${time(event.createTime)}`),
    payload && payload.length > 120
      ? h("details", {}, h("summary", {}, "payload"), h("pre", { class: "payload" }, payload))
      : payload ? h("pre", { class: "payload" }, payload) : null,
    event.error ? statusView(event.error, false) : null, // unfolded above, in #error
  );
}

export async function taskPage(root: HTMLElement, signal: AbortSignal, name: string): Promise<void> {
  const title = h("h1", {});
  const summary = h("div", {});
  const actions = h("div", { class: "toolbar" });
  const answer = h("div", {});
  const result = h("div", {});
  const children = h("section", { id: "children" });
  const connection = h("span", { class: "muted", id: "connection", "aria-live": "polite" });
  const timeline = h("ol", { class: "timeline", id: "timeline", "aria-label": "Events" });
  clear(
    root,
    title,
    actions,
    summary,
    answer,
    result,
    h("div", { class: "two" }, h("section", {}, h("h2", {}, "Input"), h("pre", { id: "input" })), children),
    h("h2", {}, "Events ", connection),
    timeline,
  );

  let task = await getTask(name);
  const render = async (): Promise<void> => {
    clear(title, `Task ${shortId(task.name)} `, stateBadge(task.state));
    title.setAttribute("data-state", task.state.replace("TASK_STATE_", ""));
    clear(summary, facts(task));
    (root.querySelector("#input") as HTMLElement).textContent = json(task.input ?? {});
    clear(result, outcome(task));
    clear(answer, task.state === "TASK_STATE_WAITING_FOR_INPUT" ? answerForm(task, () => void refresh()) : null);
    const final = FINAL_STATES.has(task.state);
    const cancel = h("button", { type: "button", class: "danger", id: "cancel", disabled: final || task.cancelRequested }, "Cancel task");
    cancel.addEventListener("click", () => {
      if (!confirm(`Cancel ${task.name}?`)) return;
      cancel.disabled = true;
      cancelTask(task.name, "cancelled from the console")
        .then((t) => {
          task = t;
          return render();
        })
        .catch((err: unknown) => actions.append(errorBox(err)));
    });
    clear(actions, final ? null : cancel);
    try {
      const tree = childTree(task, await allTasks({ session: shortId(sessionOf(task.name)) }));
      clear(children, h("h2", {}, "Child tasks"), tree ?? h("p", { class: "muted" }, "None."));
    } catch (err) {
      clear(children, h("h2", {}, "Child tasks"), errorBox(err));
    }
  };
  // One re-read at a time, in order: a slow older one must not overwrite a newer one.
  let queue = Promise.resolve();
  const refresh = (): Promise<void> => {
    queue = queue.then(async () => {
      if (signal.aborted) return;
      try {
        task = await getTask(name);
        await render();
      } catch (err) {
        if (!signal.aborted) actions.append(errorBox(err));
      }
    });
    return queue;
  };
  await render();

  let lastState = task.state;
  await followTask(
    name,
    {
      onEvent(event) {
        timeline.append(eventItem(event));
        // The record changes with the state (and a child appears): re-read it then.
        if (event.state !== lastState || event.type === "llama_mesh.ChildTaskCreated") {
          lastState = event.state;
          void refresh();
        }
      },
      onConnection(connected) {
        connection.textContent = connected ? "· live" : "· reconnecting…";
      },
      onError(status) {
        timeline.append(h("li", { class: "final" }, statusView(status)));
      },
    },
    signal,
  );
  if (!signal.aborted) connection.textContent = "· ended";
}
