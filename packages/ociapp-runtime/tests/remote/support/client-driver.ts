// A RemoteExecutor in its own process (run in the client's network namespace): reads one JSON
// command per line on stdin, answers one JSON line per command on stdout.
import { createInterface } from "node:readline";
import { RemoteExecutor } from "../../../src/index.js";

interface Command {
  id: number;
  op: "execute" | "warm" | "stats" | "close";
  artifact?: string;
  request?: unknown;
  timeout?: number;
}

const options = JSON.parse(process.env.OCIAPP_DRIVER_OPTIONS ?? "{}");
const remote = new RemoteExecutor(options);
const write = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const command = JSON.parse(line) as Command;
  const started = performance.now();
  const answer = (promise: Promise<unknown>) =>
    promise.then(
      (value) => write({ id: command.id, ok: true, value, ms: performance.now() - started }),
      (error: Error & { code?: string }) =>
        write({
          id: command.id,
          ok: false,
          error: { name: error.name, code: error.code, message: error.message },
          ms: performance.now() - started,
        }),
    );
  if (command.op === "execute") {
    void answer(
      remote.execute(
        command.artifact as string,
        command.request,
        command.timeout === undefined ? {} : { timeout: command.timeout },
      ),
    );
  } else if (command.op === "warm") void answer(remote.warm(command.artifact as string));
  else if (command.op === "stats") void answer(Promise.resolve(remote.stats()));
  else if (command.op === "close") void answer(remote.close().then(() => process.exit(0)));
});
lines.on("close", () => void remote.close().then(() => process.exit(0)));
