// The console's pages by hash path; the groups of a pattern are the page's arguments.
import { agentSessionPage, agentsPage } from "./pages/agent.js";
import { inboxPage } from "./pages/inbox.js";
import { sessionPage, sessionsPage, tasksPage } from "./pages/lists.js";
import { meshPage } from "./pages/mesh.js";
import { taskPage } from "./pages/task.js";
const ID = "([^/]+)";
export const routes = [
    [/^\/$/, (root, signal) => meshPage(root, signal)],
    [/^\/sessions$/, (root) => sessionsPage(root)],
    [new RegExp(`^/(sessions/${ID})$`), (root, signal, [name], params) => sessionPage(root, signal, name ?? "", params)],
    [new RegExp(`^/(sessions/${ID}/tasks/${ID})$`), (root, signal, [name]) => taskPage(root, signal, name ?? "")],
    [/^\/tasks$/, (root, signal, _args, params) => tasksPage(root, signal, params)],
    [/^\/inbox$/, (root, signal) => inboxPage(root, signal)],
    [/^\/agents$/, (root) => agentsPage(root)],
    [new RegExp(`^/agents/(sessions/${ID})$`), (root, signal, [name]) => agentSessionPage(root, signal, name ?? "")],
];
