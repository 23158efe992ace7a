// A RemoteExecutor in its own process (run in the client's network namespace): reads one JSON
// command per line on stdin, answers one JSON line per command on stdout.
import { createInterface } from "node:readline";
import { RemoteExecutor } from "../../../src/index.js";

interface Command {
  id: number;
  op: "execute" | "warm" | "stats" | "close" | "flood";
  artifact?: string;
  request?: unknown;
  timeout?: number;
  /** flood: rounds of perRound concurrent calls. */
  rounds?: number;
  perRound?: number;
}

const options = JSON.parse(process.env.OCIAPP_DRIVER_OPTIONS ?? "{}");
const remote = new RemoteExecutor(options);
const write = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);

/**
 * `rounds` of `perRound` concurrent calls on `artifact`: every other one an echo that must come back,
 * the rest a sleep aborted 1-4 ms after it was made (a reset stream each). What each kind got, and
 * the sessions the client opened.
 */
async function flood(artifact: string, rounds: number, perRound: number) {
  let answered = 0;
  let aborted = 0;
  const failures: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const calls = Array.from({ length: perRound }, (_, i) => {
      const value = `${round}-${i}`;
      if (i % 2 === 1) {
        return remote.execute(artifact, { op: "echo", value }).then(
          (result) =>
            (result as { value?: unknown }).value === value
              ? answered++
              : failures.push(`echo ${value}: ${JSON.stringify(result)}`),
          (error: Error) => failures.push(`echo ${value}: ${error.name}: ${error.message}`),
        );
      }
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error("caller gave up")), 1 + (i % 4));
      return remote.execute(artifact, { op: "sleep", ms: 60_000 }, { signal: controller.signal }).then(
        () => failures.push(`sleep ${value} answered`),
        (error: Error) =>
          error.message === "caller gave up"
            ? aborted++
            : failures.push(`sleep ${value}: ${error.name}: ${error.message}`),
      );
    });
    await Promise.all(calls);
  }
  return {
    answered,
    aborted,
    failures: failures.slice(0, 10),
    failed: failures.length,
    agents: remote.stats().agents,
  };
}

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
  } else if (command.op === "flood") {
    void answer(flood(command.artifact as string, command.rounds ?? 1, command.perRound ?? 2));
  } else if (command.op === "warm") void answer(remote.warm(command.artifact as string));
  else if (command.op === "stats") void answer(Promise.resolve(remote.stats()));
  else if (command.op === "close") void answer(remote.close().then(() => process.exit(0)));
});
lines.on("close", () => void remote.close().then(() => process.exit(0)));
