// A few DOM helpers: elements from a tag, attributes and children; no framework.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** `h("a", {href: "#/"}, "home")`: attributes starting with "on" are listeners. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Array<Child | Child[]>
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el: Node, children: Array<Child | Child[]>): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el: Element, ...children: Array<Child | Child[]>): void {
  el.replaceChildren();
  append(el, children);
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2) ?? "null";
}

export function time(value: string | undefined): string {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : d.toLocaleString();
}

/** A badge for a state enum, e.g. TASK_STATE_RUNNING -> "RUNNING" in its colour. */
export function stateBadge(state: string, prefix = "TASK_STATE_"): HTMLElement {
  const short = state.replace(prefix, "");
  return h("span", { class: `badge state-${short.toLowerCase()}`, "data-state": short }, short);
}

export function errorBox(err: unknown): HTMLElement {
  const message = err instanceof Error ? err.message : String(err);
  return h("p", { class: "error", role: "alert" }, message);
}

export function link(href: string, text: string): HTMLAnchorElement {
  return h("a", { href }, text);
}

export function taskHref(task: string): string {
  return `#/${task}`;
}
