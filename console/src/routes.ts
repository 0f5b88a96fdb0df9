// The console's pages by hash path; the groups of a pattern are the page's arguments.

import { inboxPage } from "./pages/inbox.js";
import { meshPage } from "./pages/mesh.js";
import { taskPage } from "./pages/task.js";

export type Page = (root: HTMLElement, signal: AbortSignal, args: string[], params: URLSearchParams) => Promise<void>;

const ID = "([^/]+)";

export const routes: Array<[RegExp, Page]> = [
  [/^\/$/, (root, signal) => meshPage(root, signal)],
  [new RegExp(`^/(sessions/${ID}/tasks/${ID})$`), (root, signal, [name]) => taskPage(root, signal, name ?? "")],
  [/^\/inbox$/, (root, signal) => inboxPage(root, signal)],
];
