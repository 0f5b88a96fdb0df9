/**
 * A service that always fails: every attempt throws `Boom` with the input's
 * `message`, as tests/mesh_workflows.py's FailingWorkflow does in Python. Its retry
 * policy is set from the command line; what becomes of the failures (retries,
 * backoff, the final FAILED and its dead letter) is the control plane's decision.
 *
 *     node clients/typescript/dist/fail_service.js 127.0.0.1:50051 --name fail-node \
 *       [--max-attempts 3] [--initial-backoff-ms 50] [--max-backoff-ms 100] \
 *       [--retryable-error-type Boom]
 *
 * Prints one JSON line {"ready": true, ...} on stdout once registered; stops on
 * SIGTERM or SIGINT.
 */
import { parseArgs } from "node:util";

import { MeshClient } from "./mesh.js";
import { QueueService } from "./service.js";

class Boom extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Boom";
  }
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    name: { type: "string", default: "fail-node" },
    "max-attempts": { type: "string" },
    "initial-backoff-ms": { type: "string" },
    "max-backoff-ms": { type: "string" },
    "retryable-error-type": { type: "string", multiple: true },
  },
});
const number = (text: string | undefined) => (text === undefined ? undefined : Number(text));
const mesh = new MeshClient(positionals[0] ?? "127.0.0.1:50051");
const service = new QueueService(mesh, {
  name: values.name,
  description: "Fails every attempt with Boom (a Node service on the Queue API).",
  retryPolicy: {
    maxAttempts: number(values["max-attempts"]),
    initialBackoffMs: number(values["initial-backoff-ms"]),
    maxBackoffMs: number(values["max-backoff-ms"]),
    retryableErrorTypes: values["retryable-error-type"],
  },
  handler: async (input) => {
    throw new Boom(String(input.message ?? "it broke"));
  },
});

await service.start();
console.log(JSON.stringify({ ready: true, service: service.serviceName, replica_id: service.replicaId }));

async function shutdown(): Promise<void> {
  try {
    await service.stop();
  } finally {
    mesh.close();
  }
}
process.once("SIGTERM", () => void shutdown());
process.once("SIGINT", () => void shutdown());
