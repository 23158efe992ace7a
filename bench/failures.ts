// Failure figures (issue "Failures reported exactly"): how long after a `docker kill` the calls in
// flight on that container are rejected (with the complete exit report), and how long a host process
// takes to exit once close() has resolved. Uses the runtime's behaviours fixture (a "sleep" op keeps
// calls in flight). Run alone: node --conditions=source --import tsx bench/failures.ts

import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import Dockerode from "dockerode";
import { LABELS, Runtime, WorkerExitedError } from "ociapp-runtime";
import { fixtureProject } from "../packages/ociapp-runtime/tests/support/fixture-build.js";

const execFileAsync = promisify(execFile);

export interface FailureFigures {
  /** ms from sending the kill request (Engine API) to the last of 3 in-flight calls rejected: median, min, max of `rounds`. */
  killToRejectedMs: { median: number; min: number; max: number; rounds: number };
  /** Whether every rejection carried exitCode 137 and oomKilled false. */
  killReportsExact: boolean;
  /** ms from close() resolving to the host process's exit, shutdownTimeout 60 s: median of `rounds`. */
  closeToExitMs: { median: number; max: number; rounds: number };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return Math.round((sorted[Math.floor(sorted.length / 2)] ?? Number.NaN) * 10) / 10;
}

async function killToRejected(artifact: string, socketDir: string, rounds: number) {
  const times: number[] = [];
  let exact = true;
  const runtime = new Runtime({ socketDir });
  const docker = new Dockerode();
  try {
    for (let round = 0; round < rounds; round++) {
      await runtime.warm(artifact);
      const calls = [1, 2, 3].map((value) =>
        runtime.execute(artifact, { op: "sleep", ms: 60_000, value }).then(
          () => undefined,
          (error: unknown) => error,
        ),
      );
      while ((runtime.stats().artifacts[0]?.inFlight ?? 0) < 3) await new Promise((r) => setTimeout(r, 5));
      const { stdout } = await execFileAsync("docker", [
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        `label=${LABELS.runtime}=${runtime.id}`,
      ]);
      const id = stdout.trim().split("\n")[0] as string;
      // From the kill request being sent (the engine's own kill time is part of what a caller waits).
      const killed = performance.now();
      await docker.getContainer(id).kill();
      const errors = await Promise.all(calls);
      times.push(performance.now() - killed);
      for (const error of errors) {
        if (!(error instanceof WorkerExitedError) || error.exitCode !== 137 || error.oomKilled) exact = false;
      }
    }
  } finally {
    await runtime.close();
  }
  return { times, exact };
}

async function closeToExit(artifact: string, socketDir: string): Promise<number> {
  const script = fileURLToPath(
    new URL("../packages/ociapp-runtime/tests/support/close-then-exit.ts", import.meta.url),
  );
  const child = spawn(
    process.execPath,
    ["--conditions=source", "--import", "tsx", script, artifact, socketDir],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const exited = new Promise<number>((resolve) => child.once("exit", () => resolve(Date.now())));
  let line: string | undefined;
  for await (const first of createInterface({ input: child.stdout })) line ??= first;
  const { closedAt } = JSON.parse(line as string) as { closedAt: number };
  return (await exited) - closedAt;
}

export async function measureFailures(
  rounds = 20,
  log: (line: string) => void = () => undefined,
): Promise<FailureFigures> {
  const fixture = await fixtureProject();
  const socketDir = await mkdtemp(join(tmpdir(), "ociapp-bench-f-"));
  try {
    log("failures: building the behaviours fixture");
    const artifact = await fixture.build();
    log(`failures: docker kill with 3 calls in flight, ${rounds} rounds`);
    const kill = await killToRejected(artifact.path, socketDir, rounds);
    log("failures: close() then process exit, 5 rounds");
    const exits: number[] = [];
    for (let i = 0; i < 5; i++) exits.push(await closeToExit(artifact.path, socketDir));
    await execFileAsync("docker", ["image", "rm", "-f", artifact.digest]).catch(() => undefined);
    return {
      killToRejectedMs: {
        median: median(kill.times),
        min: Math.round(Math.min(...kill.times) * 10) / 10,
        max: Math.round(Math.max(...kill.times) * 10) / 10,
        rounds,
      },
      killReportsExact: kill.exact,
      closeToExitMs: { median: median(exits), max: Math.max(...exits), rounds: exits.length },
    };
  } finally {
    await rm(socketDir, { recursive: true, force: true });
    await fixture.remove();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const figures = await measureFailures(20, (line) => process.stderr.write(`[bench] ${line}\n`));
  console.log(JSON.stringify(figures, null, 2));
}
