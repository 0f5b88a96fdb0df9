// Sessions and tasks: lists paginated on the server (page tokens), filtered by what
// the API filters on (a task's service and state); the filters live in the URL.

import {
  getSession,
  listServices,
  listSessions,
  listTasks,
  sessionOf,
  shortId,
  type Page,
  type Session,
  type Task,
  type TaskFilter,
} from "../api.js";
import { clear, errorBox, h, stateBadge, taskHref, time } from "../dom.js";

const STATES = ["PENDING", "RUNNING", "WAITING_FOR_INPUT", "SUCCEEDED", "FAILED", "CANCELLED"];
const PAGE_SIZE = 20;

/** Previous/next over page tokens; `show(token)` loads one page and returns the next token. */
function pager(show: (token: string) => Promise<string>): [HTMLElement, () => Promise<void>] {
  const tokens: string[] = [""]; // tokens[i] loads page i
  let index = 0;
  const prev = h("button", { type: "button", id: "prev-page" }, "← Previous");
  const next = h("button", { type: "button", id: "next-page" }, "Next →");
  const where = h("span", { class: "muted" });
  const load = async (): Promise<void> => {
    prev.disabled = next.disabled = true;
    const nextToken = await show(tokens[index] ?? "");
    tokens.length = index + 1;
    if (nextToken) tokens.push(nextToken);
    prev.disabled = index === 0;
    next.disabled = !nextToken;
    where.textContent = `page ${index + 1}`;
  };
  prev.addEventListener("click", () => {
    index = Math.max(0, index - 1);
    void load();
  });
  next.addEventListener("click", () => {
    index += 1;
    void load();
  });
  return [h("div", { class: "toolbar pager" }, prev, where, next), load];
}

function taskRow(task: Task, withSession: boolean): HTMLElement {
  const session = sessionOf(task.name);
  return h(
    "tr",
    { "data-task": task.name },
    h("td", {}, h("a", { href: taskHref(task.name) }, shortId(task.name))),
    h("td", {}, task.service),
    h("td", {}, stateBadge(task.state)),
    withSession ? h("td", {}, h("a", { href: `#/${session}` }, shortId(session))) : null,
    h("td", {}, time(task.createTime)),
    h("td", { class: "num" }, String(task.attemptCount)),
  );
}

/** A table of tasks with service and state filters, paginated by the API. */
async function taskTable(root: HTMLElement, filter: TaskFilter, params: URLSearchParams, base: string): Promise<void> {
  const withSession = filter.session === "-";
  const service = h("select", { id: "filter-service", name: "service" }, h("option", { value: "" }, "any service"));
  const state = h(
    "select",
    { id: "filter-state", name: "state" },
    h("option", { value: "" }, "any state"),
    STATES.map((s) => h("option", { value: s }, s)),
  );
  state.value = params.get("state") ?? "";
  const body = h("tbody");
  const feedback = h("div");
  const [pagerEl, load] = pager(async (token) => {
    clear(feedback);
    let page: Page<Task>;
    try {
      page = await listTasks({ ...filter, service: service.value || undefined, states: state.value ? [`TASK_STATE_${state.value}`] : undefined }, token, PAGE_SIZE);
    } catch (err) {
      clear(feedback, errorBox(err));
      return "";
    }
    clear(body, page.items.map((t) => taskRow(t, withSession)));
    if (!page.items.length) body.append(h("tr", {}, h("td", { colspan: 6 }, "No tasks match.")));
    return page.nextPageToken;
  });
  const apply = (): void => {
    const q = new URLSearchParams();
    if (service.value) q.set("service", service.value);
    if (state.value) q.set("state", state.value);
    const hash = `${base}${q.toString() ? `?${q}` : ""}`;
    if (location.hash !== hash) location.hash = hash; // the router loads the page again
  };
  service.addEventListener("change", apply);
  state.addEventListener("change", apply);
  clear(
    root,
    h(
      "div",
      { class: "toolbar" },
      h("label", {}, "Service ", service),
      h("label", {}, "State ", state),
    ),
    feedback,
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { id: "tasks" },
        h("thead", {}, h("tr", {}, ["Task", "Service", "State", withSession ? "Session" : null, "Created", "Attempts"].filter((t) => t).map((t) => h("th", { scope: "col" }, t)))),
        body,
      ),
    ),
    pagerEl,
  );
  try {
    for (const s of await listServices()) {
      const id = shortId(s.name);
      service.append(h("option", { value: id }, id));
    }
  } catch (err) {
    feedback.append(errorBox(err));
  }
  service.value = params.get("service") ?? "";
  await load();
}

export async function tasksPage(root: HTMLElement, _signal: AbortSignal, params: URLSearchParams): Promise<void> {
  const table = h("div");
  clear(root, h("h1", {}, "Tasks"), h("p", { class: "muted" }, "Every session's tasks, newest first as the mesh lists them."), table);
  await taskTable(table, { session: "-" }, params, "#/tasks");
}

function usageLine(session: Session): HTMLElement {
  const used = Number(session.usage?.totalTokens ?? 0);
  const budget = Number(session.tokenBudget ?? 0);
  return h(
    "span",
    { class: "usage", "data-used": used, "data-budget": budget },
    budget ? [h("meter", { min: 0, max: budget, value: used, "aria-label": "Tokens used of the budget" }), ` ${used} / ${budget} tokens`] : `${used} tokens (no budget)`,
  );
}

export { usageLine };

export async function sessionPage(root: HTMLElement, _signal: AbortSignal, name: string, params: URLSearchParams): Promise<void> {
  const session = await getSession(name);
  const labels = Object.entries(session.labels ?? {});
  const table = h("div");
  clear(
    root,
    h("h1", {}, `Session ${shortId(session.name)}`),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Created"),
      h("dd", {}, time(session.createTime)),
      h("dt", {}, "Labels"),
      h("dd", {}, labels.length ? labels.map(([k, v]) => `${k}=${v}`).join(", ") : "—"),
      h("dt", {}, "Tokens"),
      h("dd", {}, usageLine(session)),
    ),
    h("p", {}, h("a", { href: `#/agents/${session.name}` }, "Open as an agent conversation →")),
    h("h2", {}, "Tasks"),
    table,
  );
  await taskTable(table, { session: shortId(session.name) }, params, `#/${session.name}`);
}

export async function sessionsPage(root: HTMLElement): Promise<void> {
  const search = h("input", { type: "search", id: "session-search", placeholder: "id or label", "aria-label": "Search this page by id or label" });
  const body = h("tbody");
  const feedback = h("div");
  let shown: Session[] = [];
  const render = (): void => {
    const needle = search.value.trim().toLowerCase();
    const match = (s: Session): boolean =>
      !needle || s.name.toLowerCase().includes(needle) || Object.entries(s.labels ?? {}).some(([k, v]) => `${k}=${v}`.toLowerCase().includes(needle));
    clear(
      body,
      shown.filter(match).map((s) =>
        h(
          "tr",
          { "data-session": s.name },
          h("td", {}, h("a", { href: `#/${s.name}` }, shortId(s.name))),
          h("td", {}, Object.entries(s.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(", ")),
          h("td", {}, time(s.createTime)),
          h("td", {}, usageLine(s)),
        ),
      ),
    );
  };
  search.addEventListener("input", render);
  const [pagerEl, load] = pager(async (token) => {
    clear(feedback);
    try {
      const page = await listSessions(token, PAGE_SIZE);
      shown = page.items;
      render();
      return page.nextPageToken;
    } catch (err) {
      clear(feedback, errorBox(err));
      return "";
    }
  });
  clear(
    root,
    h("h1", {}, "Sessions"),
    h("div", { class: "toolbar" }, search),
    feedback,
    h(
      "div",
      { class: "scroll" },
      h("table", { id: "sessions" }, h("thead", {}, h("tr", {}, ["Session", "Labels", "Created", "Tokens"].map((t) => h("th", { scope: "col" }, t)))), body),
    ),
    pagerEl,
  );
  await load();
}
