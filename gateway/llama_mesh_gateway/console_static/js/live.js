// Refreshing a view while it is shown. The mesh has no stream of service or inbox
// changes, so these views re-read the API every few seconds; task events stream (sse.ts).
export const REFRESH_MS = 2000;
/** Runs `load` now and every REFRESH_MS until `signal` aborts; one load at a time. */
export async function every(signal, load) {
    while (!signal.aborted) {
        await load();
        await new Promise((resolve) => {
            const timer = setTimeout(resolve, REFRESH_MS);
            signal.addEventListener("abort", () => {
                clearTimeout(timer);
                resolve();
            });
        });
    }
}
