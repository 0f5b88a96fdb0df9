// Mesh: every service with its kind, replicas, their states and load; live.
import { listServices, shortEnum, shortId } from "../api.js";
import { clear, errorBox, h, time } from "../dom.js";
import { every } from "../live.js";
function replicaSummary(service) {
    const counts = new Map();
    for (const r of service.replicas) {
        const state = shortEnum(r.state, "REPLICA_STATE_") || "UNKNOWN";
        counts.set(state, (counts.get(state) ?? 0) + 1);
    }
    if (counts.size === 0)
        return h("span", { class: "badge state-none" }, "no replicas");
    return h("span", {}, [...counts].map(([state, n]) => h("span", { class: `badge replica-${state.toLowerCase()}`, "data-state": state }, `${n} ${state}`)));
}
function load(service) {
    let running = 0;
    let capacity = 0;
    for (const r of service.replicas) {
        running += r.runningTaskCount;
        capacity += r.maxConcurrency;
    }
    return capacity ? `${running} / ${capacity}` : `${running}`;
}
export async function meshPage(root, signal) {
    const body = h("tbody");
    const status = h("p", { class: "muted", "aria-live": "polite" });
    clear(root, h("h1", {}, "Mesh"), status, h("div", { class: "scroll" }, h("table", { id: "services" }, h("thead", {}, h("tr", {}, ["Service", "Kind", "Description", "Replicas", "State", "Load"].map((t) => h("th", { scope: "col" }, t)))), body)));
    await every(signal, async () => {
        try {
            const services = await listServices();
            services.sort((a, b) => a.name.localeCompare(b.name));
            clear(body, services.map((s) => {
                const id = shortId(s.name);
                return h("tr", { "data-service": id }, h("td", {}, h("a", { href: `#/tasks?service=${encodeURIComponent(id)}` }, id)), h("td", {}, shortEnum(s.kind, "SERVICE_KIND_").toLowerCase() || "workflow"), h("td", { class: "description" }, s.description), h("td", { class: "num" }, String(s.replicas.length)), h("td", {}, replicaSummary(s)), h("td", { class: "num" }, load(s)));
            }));
            if (services.length === 0)
                body.append(h("tr", {}, h("td", { colspan: 6 }, "No services are registered.")));
            status.textContent = `${services.length} services · updated ${time(new Date().toISOString())}`;
        }
        catch (err) {
            clear(status, errorBox(err));
        }
    });
}
