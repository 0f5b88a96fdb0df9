// A few DOM helpers: elements from a tag, attributes and children; no framework.
/** `h("a", {href: "#/"}, "home")`: attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false)
            continue;
        if (typeof value === "function")
            el.addEventListener(key.slice(2), value);
        else if (value === true)
            el.setAttribute(key, "");
        else
            el.setAttribute(key, String(value));
    }
    append(el, children);
    return el;
}
export function append(el, children) {
    for (const child of children.flat()) {
        if (child === null || child === undefined || child === false)
            continue;
        el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
}
export function clear(el, ...children) {
    el.replaceChildren();
    append(el, children);
}
export function json(value) {
    return JSON.stringify(value, null, 2) ?? "null";
}
export function time(value) {
    if (!value)
        return "";
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? value : d.toLocaleString();
}
/** A badge for a state enum, e.g. TASK_STATE_RUNNING -> "RUNNING" in its colour. */
export function stateBadge(state, prefix = "TASK_STATE_") {
    const short = state.replace(prefix, "");
    return h("span", { class: `badge state-${short.toLowerCase()}`, "data-state": short }, short);
}
export function errorBox(err) {
    const message = err instanceof Error ? err.message : String(err);
    return h("p", { class: "error", role: "alert" }, message);
}
export function link(href, text) {
    return h("a", { href }, text);
}
export function taskHref(task) {
    return `#/${task}`;
}
