/**
 * The `upper` service: upper-cases `text`. A whole llama-mesh service in Node.
 *
 *     node clients/typescript/dist/upper_service.js 127.0.0.1:50051 [--name upper]
 *
 * Prints one JSON line {"ready": true, ...} on stdout once registered; stops on
 * SIGTERM or SIGINT (finishes its running tasks, deregisters, exits 0).
 */
import { parseArgs } from "node:util";

import { MeshClient } from "./mesh.js";
import { QueueService } from "./service.js";

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    name: { type: "string", default: "upper" },
    "max-concurrency": { type: "string", default: "4" },
  },
});
const address = positionals[0] ?? "127.0.0.1:50051";
const mesh = new MeshClient(address);
const service = new QueueService(mesh, {
  name: values.name,
  description: "Upper-cases text (a Node service on the Queue API).",
  inputSchema: {
    type: "object",
    properties: { text: { type: "string" } },
    required: ["text"],
  },
  maxConcurrency: Number(values["max-concurrency"]),
  handler: async (input, task) => {
    const text = String(input.text);
    await task.progress("UpperStarted", { length: text.length });
    return text.toUpperCase();
  },
});

await service.start();
console.log(
  JSON.stringify({ ready: true, service: service.serviceName, replica_id: service.replicaId, runtime: "node" }),
);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.error(`${signal}: stopping`);
  try {
    await service.stop();
  } finally {
    mesh.close();
  }
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));
