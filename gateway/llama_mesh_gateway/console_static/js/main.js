// The console's shell: sign-in, navigation, the light/dark switch and a hash router.
// Each page renders into <main> and stops its streams and timers when `signal` aborts
// (the next navigation).
import { auth, callerIdentity, setOnUnauthenticated } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { meshPage } from "./pages/mesh.js";
import { routes } from "./routes.js";
const main = document.getElementById("main");
const nav = document.getElementById("nav");
let current = null;
function signInPage(message) {
    current?.abort();
    current = null;
    nav.hidden = true;
    const input = h("input", {
        id: "token",
        type: "password",
        name: "token",
        autocomplete: "current-password",
        "aria-describedby": "token-help",
    });
    const feedback = h("div", { "aria-live": "assertive" }, message ? errorBox(message) : null);
    const form = h("form", { id: "sign-in", class: "card narrow" }, h("h1", {}, "Sign in"), h("label", { for: "token" }, "Token"), input, h("p", { id: "token-help", class: "muted" }, "An API key or JWT of the mesh (llama-mesh up writes an admin token under its state directory). ", "Leave it empty for a mesh without authentication. It is kept in this tab only."), h("button", { type: "submit" }, "Sign in"), feedback);
    form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        auth.signIn(input.value.trim());
        callerIdentity()
            .then(() => route())
            .catch((err) => {
            auth.signOut();
            clear(feedback, errorBox(err));
        });
    });
    clear(main, form);
    input.focus();
}
function markCurrentNav(path) {
    for (const a of nav.querySelectorAll("a[data-nav]")) {
        const target = a.getAttribute("href")?.slice(1) ?? "";
        const here = target === "/" ? path === "/" : path.startsWith(target);
        if (here)
            a.setAttribute("aria-current", "page");
        else
            a.removeAttribute("aria-current");
    }
}
async function route() {
    if (!auth.signedIn()) {
        signInPage();
        return;
    }
    nav.hidden = false;
    current?.abort();
    const controller = new AbortController();
    current = controller;
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path = "/", search = ""] = hash.split("?", 2);
    const params = new URLSearchParams(search);
    markCurrentNav(path);
    main.replaceChildren();
    try {
        for (const [pattern, page] of routes) {
            const m = pattern.exec(path);
            if (m) {
                await page(main, controller.signal, m.slice(1), params);
                return;
            }
        }
        await meshPage(main, controller.signal);
    }
    catch (err) {
        if (!controller.signal.aborted)
            main.append(errorBox(err));
    }
}
function setTheme(theme) {
    document.documentElement.dataset["theme"] = theme;
    localStorage.setItem("llama-mesh-console-theme", theme);
    const button = document.getElementById("theme");
    if (button)
        button.setAttribute("aria-pressed", String(theme === "dark"));
}
function start() {
    const saved = localStorage.getItem("llama-mesh-console-theme");
    const preferred = matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
    setTheme(saved ?? preferred);
    document.getElementById("theme")?.addEventListener("click", () => {
        setTheme(document.documentElement.dataset["theme"] === "dark" ? "light" : "dark");
    });
    document.getElementById("sign-out")?.addEventListener("click", () => {
        auth.signOut();
        signInPage();
    });
    setOnUnauthenticated((err) => {
        auth.signOut();
        signInPage(`Signed out: ${err.message}`);
    });
    // "g" then a letter jumps to a page, like many consoles; forms keep their keys.
    let leader = false;
    document.addEventListener("keydown", (ev) => {
        const target = ev.target;
        if (ev.ctrlKey || ev.metaKey || ev.altKey || target.closest("input, textarea, select"))
            return;
        if (leader) {
            leader = false;
            const to = { m: "#/", s: "#/sessions", t: "#/tasks", i: "#/inbox", a: "#/agents" }[ev.key];
            if (to) {
                location.hash = to;
                ev.preventDefault();
            }
        }
        else if (ev.key === "g") {
            leader = true;
        }
    });
    window.addEventListener("hashchange", () => void route());
    void route();
}
start();
