// Issue 16's figures in one run, each beside its baseline and target, from interleaved rounds (the
// machine is shared: a noisy minute lands on every contender): cold start per Node major against the
// engine floor, scale from zero with a standby, the first call after warm(), and the warm p50 and
// throughput against the raw in-container echo, with CPU per call on each side (bench/warm.ts),
// under runc and runsc (gVisor).
// Alone (merges its figures into bench/results.json under "startup"):
//   node --conditions=source --import tsx bench/startup.ts

import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { readArtifactIndex } from "ociapp/artifact";
import { build } from "ociapp-build";
import { Runtime } from "ociapp-runtime";
import { type ColdFigures, type ColdTarget, measureColdStarts, type Spread, spread } from "./coldstart.js";
import { ratio } from "./measure.js";
import { measureStandby, type StandbyFigures } from "./standby.js";
import { imageOf, measureWarm, type WarmFigures } from "./warm.js";

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PAYLOAD = { value: "hello" };

export const TARGETS = {
  coldAboveFloorMs: 50,
  scaleFromZeroMs: 100,
  firstAfterWarmVsWarmP50: 3,
  warmP50VsRaw: 1.3,
  throughput256VsRaw: 0.9,
};

/** bench/first-call.ts in processes of their own: the first execute after warm(), in microseconds. */
async function measureFirstAfterWarm(artifact: string, rounds: number): Promise<Spread> {
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const { stdout } = await execFileAsync(
      process.execPath,
      ["--conditions=source", "--import", "tsx", join(ROOT, "bench/first-call.ts"), artifact],
      { cwd: ROOT },
    );
    samples.push((JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as { firstUs: number }).firstUs);
  }
  return spread(samples);
}

export interface StartupFigures {
  targets: typeof TARGETS;
  coldStart: (ColdFigures & { target: string; met: boolean })[];
  scaleFromZero: StandbyFigures & { met: boolean };
  firstAfterWarm: { us: Spread; warmP50Us: number; ratio: number; met: boolean };
  warm: (WarmFigures & { met: { p50: boolean; throughput: boolean } })[];
}

/** Builds echo-app on node 20, 22 and 24 base images into `workDir` and measures everything. */
export async function measureStartup(
  workDir: string,
  rounds: number,
  log: (line: string) => void,
): Promise<StartupFigures> {
  const artifacts: Record<string, { path: string; image: string }> = {};
  for (const major of [20, 22, 24]) {
    log(`startup: building echo-app on node:${major}-bookworm-slim`);
    const built = await build({
      projectRoot: join(ROOT, "examples/echo-app"),
      outputDir: join(workDir, `node${major}`),
      network: "host",
      baseImage: `node:${major}-bookworm-slim`,
      progress: "quiet",
    });
    const { digest } = await readArtifactIndex(built.path);
    artifacts[`node${major}`] = { path: built.path, image: imageOf(digest) };
    // Loaded once, outside every timed figure.
    const loader = new Runtime();
    await loader.execute(built.path, PAYLOAD).finally(() => loader.close());
  }
  const hostMajor = `node${process.versions.node.split(".")[0]}`;
  const main = artifacts[hostMajor] ?? (artifacts.node22 as { path: string; image: string });
  const targets: ColdTarget[] = Object.entries(artifacts).map(([label, a]) => ({
    label,
    artifact: a.path,
    image: a.image,
  }));
  targets.push({ label: `${hostMajor}-runsc`, artifact: main.path, image: main.image, runtime: "runsc" });
  const cold = await measureColdStarts(targets, rounds, log);
  const standby = await measureStandby(main.path, rounds, log);
  const warm: WarmFigures[] = [];
  for (const runtime of ["runc", "runsc"])
    warm.push(await measureWarm(main.path, main.image, runtime, rounds, log));
  log("startup: first execute after warm(), each in a process of its own");
  const first = await measureFirstAfterWarm(main.path, rounds);
  const warmP50Us = warm[0]?.ociappP50Us.median ?? Number.NaN;
  return {
    targets: TARGETS,
    coldStart: cold.map((figures) => ({
      ...figures,
      target: `<= floor + ${TARGETS.coldAboveFloorMs} ms`,
      met: figures.aboveFloorMs <= TARGETS.coldAboveFloorMs,
    })),
    scaleFromZero: { ...standby, met: standby.withStandbyMs.median <= TARGETS.scaleFromZeroMs },
    firstAfterWarm: {
      us: first,
      warmP50Us,
      ratio: ratio(first.median, warmP50Us),
      met: ratio(first.median, warmP50Us) <= TARGETS.firstAfterWarmVsWarmP50,
    },
    warm: warm.map((figures) => ({
      ...figures,
      met: {
        p50: figures.warmP50VsRaw <= TARGETS.warmP50VsRaw,
        throughput: figures.throughput256VsRaw >= TARGETS.throughput256VsRaw,
      },
    })),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { mkdtemp, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const work = await mkdtemp(join(tmpdir(), "ociapp-startup-"));
  try {
    const startup = await measureStartup(work, Number(process.env.ROUNDS ?? 5), (line) =>
      process.stderr.write(`[bench] ${line}\n`),
    );
    const resultsPath = fileURLToPath(new URL("./results.json", import.meta.url));
    const results = JSON.parse(await readFile(resultsPath, "utf8")) as Record<string, unknown>;
    results.startup = { measuredAt: new Date().toISOString(), node: process.version, ...startup };
    await writeFile(resultsPath, `${JSON.stringify(results, null, 2)}\n`);
    console.log(JSON.stringify(startup, (key, value) => (key === "samples" ? undefined : value), 2));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
