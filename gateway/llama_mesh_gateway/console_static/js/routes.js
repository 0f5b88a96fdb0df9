// The console's pages by hash path; the groups of a pattern are the page's arguments.
import { inboxPage } from "./pages/inbox.js";
import { meshPage } from "./pages/mesh.js";
import { taskPage } from "./pages/task.js";
const ID = "([^/]+)";
export const routes = [
    [/^\/$/, (root, signal) => meshPage(root, signal)],
    [new RegExp(`^/(sessions/${ID}/tasks/${ID})$`), (root, signal, [name]) => taskPage(root, signal, name ?? "")],
    [/^\/inbox$/, (root, signal) => inboxPage(root, signal)],
];
