// google.rpc.Status as a person reads it: the code's name, the message, the error type
// (ErrorInfo.reason) and the remote traceback (DebugInfo).
import { h } from "./dom.js";
const CODES = [
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
];
export function codeName(code) {
    return CODES[code ?? 0] ?? `code ${code}`;
}
function detail(status, type) {
    return status.details?.find((d) => String(d["@type"] ?? "").endsWith(`/google.rpc.${type}`));
}
/** The traceback of a DebugInfo detail: its `detail` text, else its stack entries. */
export function traceback(status) {
    const debug = detail(status, "DebugInfo");
    if (!debug)
        return null;
    const text = debug["detail"];
    if (typeof text === "string" && text)
        return text;
    const entries = debug["stackEntries"];
    return Array.isArray(entries) && entries.length ? entries.join("\n") : null;
}
/** A Status; its traceback unfolded when `open` (the task's error), folded otherwise. */
export function statusView(status, open = true) {
    const info = detail(status, "ErrorInfo");
    const reason = typeof info?.["reason"] === "string" ? info["reason"] : "";
    const trace = traceback(status);
    const others = (status.details ?? []).filter((d) => {
        const type = String(d["@type"] ?? "");
        return !type.endsWith("/google.rpc.ErrorInfo") && !type.endsWith("/google.rpc.DebugInfo");
    });
    return h("div", { class: "status", "data-code": codeName(status.code) }, h("p", {}, h("span", { class: "badge state-failed" }, codeName(status.code)), reason ? h("code", { class: "reason" }, reason) : null), h("p", { class: "message" }, status.message), trace ? h("details", { open }, h("summary", {}, "Traceback"), h("pre", { class: "traceback" }, trace)) : null, others.length ? h("details", {}, h("summary", {}, "Details"), h("pre", {}, JSON.stringify(others, null, 2))) : null);
}
