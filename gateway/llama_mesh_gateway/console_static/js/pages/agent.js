// Agents: an agent session as a chat transcript. Each task of an agent service in the
// session is a turn: the user's message, then the agent's steps from the task's event
// stream (docs/agents.md's vocabulary): text streaming in as TextDelta events, tool
// calls folded with their results, and the session's tokens against its budget.
import { FINAL_STATES, allTasks, createTask, getSession, listServices, listTasks, sessionOf, shortId, } from "../api.js";
import { clear, errorBox, h, json, stateBadge, taskHref, time } from "../dom.js";
import { followTask } from "../sse.js";
import { statusView } from "../status.js";
import { usageLine } from "./lists.js";
const AGENT = "llama_mesh.agent.";
function str(value) {
    return typeof value === "string" ? value : "";
}
/** JSON with sorted keys (a Struct's keys come in no set order); one line unless `indent`. */
function compact(value, indent) {
    return JSON.stringify(value ?? {}, (_key, v) => v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
        : v, indent);
}
/** The transcript of one task: a user bubble and an assistant bubble built from events. */
class Turn {
    task;
    element;
    assistant = h("div", { class: "bubble assistant", "aria-live": "polite" });
    steps = new Map();
    calls = new Map();
    attempt = 0;
    answered = false;
    constructor(task) {
        this.task = task;
        const input = task.input ?? {};
        const message = typeof input["user_msg"] === "string" ? input["user_msg"] : json(input);
        this.element = h("section", { class: "turn", "data-task": task.name }, h("div", { class: "bubble user" }, h("div", { class: "text" }, message)), this.assistant, h("p", { class: "muted turn-meta" }, h("a", { href: taskHref(task.name) }, `${task.service} · ${shortId(task.name)}`), " · ", time(task.createTime)));
    }
    step(id) {
        let el = this.steps.get(id);
        if (!el) {
            el = h("div", { class: "step", "data-step": id }, h("div", { class: "text" }));
            this.steps.set(id, el);
            this.assistant.append(el);
        }
        return el;
    }
    add(event) {
        if (event.attempt > this.attempt) {
            // A new attempt starts its steps again: keep only the latest attempt's.
            this.attempt = event.attempt;
            this.assistant.replaceChildren();
            this.steps.clear();
            this.calls.clear();
        }
        const p = (event.payload ?? {});
        const stepId = str(p["step_id"]);
        switch (event.type) {
            case `${AGENT}InferenceStarted`:
                this.step(stepId);
                break;
            case `${AGENT}TextDelta`:
                this.step(stepId).querySelector(".text")?.append(str(p["text"]));
                break;
            case `${AGENT}ThinkingDelta`: {
                const step = this.step(stepId);
                let thinking = step.querySelector(".thinking pre");
                if (!thinking) {
                    thinking = h("pre", {});
                    step.prepend(h("details", { class: "thinking" }, h("summary", {}, "Thinking"), thinking));
                }
                thinking.append(str(p["text"]));
                break;
            }
            case `${AGENT}InferenceCompleted`: {
                const message = (p["message"] ?? {});
                const text = this.step(stepId).querySelector(".text");
                if (text)
                    text.textContent = str(message["content"]); // the whole message wins
                break;
            }
            case `${AGENT}ToolCallStarted`: {
                const id = str(p["call_id"]);
                const result = h("pre", { class: "tool-result muted" }, "running…");
                const call = h("details", { class: "tool", "data-call": id, "data-tool": str(p["tool_name"]) }, h("summary", {}, `tool ${str(p["tool_name"])}(${compact(p["arguments"])})`), h("p", { class: "muted" }, "Arguments"), h("pre", { class: "tool-arguments" }, compact(p["arguments"], 2)), h("p", { class: "muted" }, "Result"), result);
                this.calls.set(id, call);
                this.step(stepId).append(call);
                break;
            }
            case `${AGENT}ToolCallCompleted`: {
                const call = this.calls.get(str(p["call_id"]));
                const result = call?.querySelector(".tool-result");
                if (call && result) {
                    result.textContent = str(p["output"]);
                    result.classList.remove("muted");
                    if (p["is_error"] === true) {
                        call.classList.add("tool-error");
                        result.classList.add("error");
                    }
                    call.querySelector("summary")?.append(p["is_error"] === true ? " → error" : ` → ${str(p["output"])}`);
                }
                break;
            }
            case `${AGENT}ToolExecutionStarted`:
            case `${AGENT}ToolExecutionCompleted`:
            case "llama_mesh.TokenUsage":
                break;
            default:
                this.other(event, p);
        }
    }
    other(event, p) {
        if (event.state === "TASK_STATE_SUCCEEDED") {
            const response = str(p["response"]);
            const shown = [...this.steps.values()].some((s) => (s.querySelector(".text")?.textContent ?? "").trim());
            if (response && !shown)
                this.assistant.append(h("div", { class: "text" }, response));
            this.answered = true;
        }
        else if (event.error) {
            this.assistant.append(statusView(event.error));
        }
        else if (event.state === "TASK_STATE_WAITING_FOR_INPUT") {
            this.assistant.append(h("p", {}, "Waiting for a person: ", h("a", { href: "#/inbox" }, "answer in the inbox")));
        }
        else if (event.type === "llama_mesh.ChildTaskCreated") {
            const child = str(p["task"]);
            this.assistant.append(h("p", { class: "muted" }, "child task ", h("a", { href: taskHref(child) }, `${str(p["service"])} · ${shortId(child)}`)));
        }
        if (FINAL_STATES.has(event.state)) {
            this.element.dataset["state"] = event.state.replace("TASK_STATE_", "");
            this.element.querySelector(".turn-meta")?.append(" ", stateBadge(event.state));
        }
    }
    get done() {
        return this.answered;
    }
}
export async function agentSessionPage(root, signal, name) {
    const services = await listServices();
    const agents = new Set(services.filter((s) => s.kind === "SERVICE_KIND_AGENT").map((s) => shortId(s.name)));
    const usage = h("span", { id: "session-usage" });
    const transcript = h("div", { class: "transcript", id: "transcript" });
    const composer = h("div", {});
    clear(root, h("h1", {}, "Agent session ", h("a", { href: `#/${name}` }, shortId(name))), h("p", {}, "Tokens: ", usage), transcript, composer);
    const showUsage = async () => {
        try {
            clear(usage, usageLine(await getSession(name)));
        }
        catch (err) {
            clear(usage, errorBox(err));
        }
    };
    await showUsage();
    const tasks = (await allTasks({ session: shortId(name) })).filter((t) => agents.has(t.service) && !t.parentTask);
    tasks.sort((a, b) => (a.createTime ?? "").localeCompare(b.createTime ?? ""));
    const follow = async (task) => {
        const turn = new Turn(task);
        transcript.append(turn.element);
        await followTask(task.name, {
            onEvent(event) {
                turn.add(event);
                if (event.type === `${AGENT}InferenceCompleted` || FINAL_STATES.has(event.state))
                    void showUsage();
            },
            onError(status) {
                turn.element.append(statusView(status));
            },
        }, signal);
    };
    // A message to the session's agent (the one of its last turn, or the first agent).
    const agentNames = [...agents].sort();
    const last = tasks[tasks.length - 1];
    const target = h("select", { id: "agent", "aria-label": "Agent" }, agentNames.map((a) => h("option", { value: a }, a)));
    if (last)
        target.value = last.service;
    const message = h("textarea", { id: "message", rows: 2, "aria-label": "Message", placeholder: "Message the agent" });
    const feedback = h("div", { "aria-live": "assertive" });
    const form = h("form", { id: "composer", class: "card" }, h("div", { class: "toolbar" }, target, h("button", { type: "submit" }, "Send")), message, feedback);
    form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const text = message.value.trim();
        if (!text || !target.value)
            return;
        createTask(name, target.value, { user_msg: text })
            .then((task) => {
            message.value = "";
            clear(feedback);
            return follow(task);
        })
            .catch((err) => clear(feedback, errorBox(err)));
    });
    if (agentNames.length)
        composer.append(form);
    for (const task of tasks) {
        if (signal.aborted)
            return;
        await follow(task); // earlier turns end at once (a replay); the last may be live
    }
    if (!tasks.length)
        transcript.append(h("p", { class: "muted" }, "No agent turns in this session yet."));
}
export async function agentsPage(root) {
    const services = (await listServices()).filter((s) => s.kind === "SERVICE_KIND_AGENT");
    const list = h("div", { id: "agents" });
    clear(root, h("h1", {}, "Agents"), list);
    if (!services.length)
        list.append(h("p", {}, "No agent services are registered."));
    for (const service of services) {
        const id = shortId(service.name);
        const page = await listTasks({ session: "-", service: id }, "", 50);
        const sessions = [...new Set(page.items.map((t) => sessionOf(t.name)))];
        list.append(h("section", { class: "card", "data-service": id }, h("h2", {}, id), h("p", { class: "muted" }, service.description), sessions.length
            ? h("ul", {}, sessions.map((s) => h("li", {}, h("a", { href: `#/agents/${s}` }, `session ${shortId(s)}`))))
            : h("p", {}, "No sessions yet.")));
    }
}
