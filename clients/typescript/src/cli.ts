/**
 * A tiny command line over the wrapper, used by the docs and the polyglot tests.
 *
 *     node clients/typescript/dist/cli.js ADDRESS run SERVICE '{"arg1": "hello"}'
 *         prints the finished Task as protobuf JSON
 *     node clients/typescript/dist/cli.js ADDRESS result SERVICE '{"arg1": "hello"}'
 *         prints the result as JSON; on a typed error prints {"error": ...} and exits 1
 *     node clients/typescript/dist/cli.js ADDRESS stream SERVICE '{"n": 3}'
 *         creates the task and prints each of its events as one JSON line
 */
import type { JsonObject } from "@bufbuild/protobuf";

import { codeName, MeshClient, MeshError, TaskFailedError, taskToJson } from "./mesh.js";

function usage(): never {
  console.error("usage: cli.js ADDRESS run|result|stream SERVICE [INPUT_JSON]");
  process.exit(2);
}

async function main(argv: string[]): Promise<number> {
  const [address, command, service, input = "{}"] = argv;
  if (!address || !command || !service) usage();
  const mesh = new MeshClient(address);
  try {
    const session = await mesh.createSession();
    const args = JSON.parse(input) as JsonObject;
    switch (command) {
      case "run": {
        const task = await session.runTask(service, args);
        console.log(JSON.stringify(taskToJson(task)));
        return 0;
      }
      case "result": {
        console.log(JSON.stringify(await session.run(service, args)));
        return 0;
      }
      case "stream": {
        const task = await session.createTask(service, args);
        for await (const event of mesh.events(task.name)) console.log(JSON.stringify(event));
        return 0;
      }
      default:
        usage();
    }
  } catch (err) {
    if (!(err instanceof MeshError)) throw err;
    console.log(
      JSON.stringify({
        error: err.name,
        code: codeName(err.code),
        errorType: err instanceof TaskFailedError ? err.errorType : undefined,
        message: err.message,
      }),
    );
    return 1;
  } finally {
    mesh.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
