// Issue 16 target 4: the warm path against the raw in-container echo (bench/echo-server.cjs in a
// container of the same image, same limits), in interleaved rounds. Beside wall time (p50, calls per
// second at 256 callers) it reports CPU per call on each side: the host process (process.cpuUsage)
// and the container (its cgroup's cpuacct.usage), which are far steadier than wall time on a loaded
// machine. Alone (prints the figures; WRITE=1 also records them in bench/results.json as "warmPath"):
//   node --conditions=source --import tsx bench/warm.ts <artifact.ociapp> [rounds] [runc,runsc]

import { readFileSync } from "node:fs";
import { readArtifactIndex } from "ociapp/artifact";
import { Runtime } from "ociapp-runtime";
import { type Spread, spread } from "./coldstart.js";
import { DEFAULT_RUN_FLAGS } from "./engine-floor.js";
import { measureLatency, measureThroughput, ratio, round } from "./measure.js";
import { startContainerEcho } from "./raw-baselines.js";

const PAYLOAD = { value: "hello" };
const LATENCY_CALLS = Number(process.env.LATENCY_CALLS ?? 5_000);
const THROUGHPUT_CALLS = Number(process.env.THROUGHPUT_CALLS ?? 50_000);
/** Calls made before anything is timed, as a warm container in service has seen (both sides' JIT). */
const WARMUP_CALLS = Number(process.env.WARMUP_CALLS ?? 20_000);
const CALLERS = 256;

/** One contender's figures from one round. */
interface Sample {
  p50Us: number;
  perSecond: number;
  /** Host process CPU (user + system) per call, sequential and at 256 callers. */
  hostCpuUs: { sequential: number; concurrent: number };
  /** The container's CPU per call (NaN where the cgroup cannot be read). */
  containerCpuUs: { sequential: number; concurrent: number };
}

export interface WarmSide {
  p50Us: Spread;
  perSecond: Spread;
  hostCpuUsSequential: Spread;
  hostCpuUsConcurrent: Spread;
  containerCpuUsSequential: Spread;
  containerCpuUsConcurrent: Spread;
}

export interface WarmFigures {
  runtime: string;
  rawP50Us: Spread;
  ociappP50Us: Spread;
  raw256PerSecond: Spread;
  ociapp256PerSecond: Spread;
  warmP50VsRaw: number;
  throughput256VsRaw: number;
  /** Host CPU per call at 256 callers, ociapp over raw: what bounds throughput on a small host. */
  hostCpu256VsRaw: number;
  /**
   * The same runtime with maxConcurrency 256: as many calls in flight per container as the raw echo
   * has (the default, 64, leaves 192 of the 256 callers queued on the host), for throughput.
   */
  depth256PerSecond: Spread;
  depth256VsRaw: number;
  /** Every figure of each contender, CPU per call included. */
  sides: { raw: WarmSide; ociapp: WarmSide; ociappDepth256: WarmSide };
}

/** Nanoseconds of CPU the container's cgroup has used (cgroup v1 or v2, cgroupfs or systemd). */
export function containerCpuNs(id: string): number {
  const candidates = [
    `/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`,
    `/sys/fs/cgroup/cpu,cpuacct/docker/${id}/cpuacct.usage`,
    `/sys/fs/cgroup/system.slice/docker-${id}.scope/cpu.stat`,
    `/sys/fs/cgroup/docker/${id}/cpu.stat`,
  ];
  for (const path of candidates) {
    try {
      const text = readFileSync(path, "utf8");
      if (path.endsWith("cpuacct.usage")) return Number(text);
      const usage = /usage_usec (\d+)/.exec(text);
      if (usage) return Number(usage[1]) * 1000;
    } catch {}
  }
  return Number.NaN;
}

function hostCpuUs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return used.user + used.system;
}

export async function sample(call: () => Promise<unknown>, containerId: string): Promise<Sample> {
  if (WARMUP_CALLS > 0) await measureThroughput(call, CALLERS, WARMUP_CALLS);
  await measureLatency(call, 0, 1000);
  let host = process.cpuUsage();
  let container = containerCpuNs(containerId);
  const latency = await measureLatency(call, LATENCY_CALLS, 0);
  const sequential = {
    host: hostCpuUs(host) / LATENCY_CALLS,
    container: (containerCpuNs(containerId) - container) / 1000 / LATENCY_CALLS,
  };
  host = process.cpuUsage();
  container = containerCpuNs(containerId);
  const throughput = await measureThroughput(call, CALLERS, THROUGHPUT_CALLS);
  const calls = THROUGHPUT_CALLS + Math.min(THROUGHPUT_CALLS, 1000);
  return {
    p50Us: latency.p50Us,
    perSecond: throughput.callsPerSecond,
    hostCpuUs: { sequential: round(sequential.host, 2), concurrent: round(hostCpuUs(host) / calls, 2) },
    containerCpuUs: {
      sequential: round(sequential.container, 2),
      concurrent: round((containerCpuNs(containerId) - container) / 1000 / calls, 2),
    },
  };
}

function side(samples: Sample[]): WarmSide {
  return {
    p50Us: spread(samples.map((s) => s.p50Us)),
    perSecond: spread(samples.map((s) => s.perSecond)),
    hostCpuUsSequential: spread(samples.map((s) => s.hostCpuUs.sequential)),
    hostCpuUsConcurrent: spread(samples.map((s) => s.hostCpuUs.concurrent)),
    containerCpuUsSequential: spread(samples.map((s) => s.containerCpuUs.sequential)),
    containerCpuUsConcurrent: spread(samples.map((s) => s.containerCpuUs.concurrent)),
  };
}

/** Loads the artifact's image when the engine lacks it (other work on a shared engine may remove it). */
async function ensureImage(artifact: string, image: string): Promise<void> {
  const { execFile } = await import("node:child_process");
  const { promisify } = await import("node:util");
  const present = await promisify(execFile)("docker", ["image", "inspect", image]).then(
    () => true,
    () => false,
  );
  if (present) return;
  const loader = new Runtime();
  await loader.execute(artifact, PAYLOAD).finally(() => loader.close());
}

type Contender = "raw" | "ociapp" | "ociappDepth256";

async function sampleContender(
  which: Contender,
  artifact: string,
  image: string,
  runtime: string,
): Promise<Sample> {
  if (which === "raw") {
    await ensureImage(artifact, image);
    const echo = await startContainerEcho(image, DEFAULT_RUN_FLAGS, runtime);
    try {
      return await sample(() => echo.client.call(PAYLOAD), echo.id ?? "");
    } finally {
      await echo.close();
    }
  }
  const rt = new Runtime({
    container: { runtime },
    ...(which === "ociappDepth256" ? { maxConcurrency: CALLERS } : {}),
  });
  try {
    await rt.warm(artifact);
    const id = rt.stats().artifacts[0]?.containers[0]?.id ?? "";
    return await sample(() => rt.execute(artifact, PAYLOAD), id);
  } finally {
    await rt.close();
  }
}

/**
 * Raw in-container echo and the runtime (defaults, then maxConcurrency 256), same image and limits,
 * in rotating order, `rounds` times.
 */
export async function measureWarm(
  artifact: string,
  image: string,
  runtime: string,
  rounds: number,
  log: (line: string) => void,
): Promise<WarmFigures> {
  const samples: Record<Contender, Sample[]> = { raw: [], ociapp: [], ociappDepth256: [] };
  const order: Contender[] = ["raw", "ociapp", "ociappDepth256"];
  for (let i = 0; i < rounds; i++) {
    for (let j = 0; j < order.length; j++) {
      const which = order[(i + j) % order.length] as Contender;
      const figures = await sampleContender(which, artifact, image, runtime);
      samples[which].push(figures);
      log(`warm ${runtime}: round ${i + 1} ${which} ${JSON.stringify(figures)}`);
    }
  }
  const sides = {
    raw: side(samples.raw),
    ociapp: side(samples.ociapp),
    ociappDepth256: side(samples.ociappDepth256),
  };
  return {
    runtime,
    rawP50Us: sides.raw.p50Us,
    ociappP50Us: sides.ociapp.p50Us,
    raw256PerSecond: sides.raw.perSecond,
    ociapp256PerSecond: sides.ociapp.perSecond,
    warmP50VsRaw: ratio(sides.ociapp.p50Us.median, sides.raw.p50Us.median),
    throughput256VsRaw: ratio(sides.ociapp.perSecond.median, sides.raw.perSecond.median),
    hostCpu256VsRaw: ratio(sides.ociapp.hostCpuUsConcurrent.median, sides.raw.hostCpuUsConcurrent.median),
    depth256PerSecond: sides.ociappDepth256.perSecond,
    depth256VsRaw: ratio(sides.ociappDepth256.perSecond.median, sides.raw.perSecond.median),
    sides,
  };
}

/** The image name the runtime loads an artifact under (images/names.ts). */
export function imageOf(digest: string): string {
  return `ociapp.invalid/artifact:sha256-${digest.slice("sha256:".length)}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [artifact, rounds = "3", runtimes = "runc"] = process.argv.slice(2);
  if (!artifact) {
    throw new Error("usage: bench/warm.ts <artifact.ociapp> [rounds] [runc,runsc] (WRITE=1 records it)");
  }
  const { digest } = await readArtifactIndex(artifact);
  const { loadavg } = await import("node:os");
  const loadBefore = loadavg()[0] as number;
  const figures: WarmFigures[] = [];
  for (const runtime of runtimes.split(",")) {
    figures.push(
      await measureWarm(artifact, imageOf(digest), runtime, Number(rounds), (line) =>
        process.stderr.write(`[bench] ${line}\n`),
      ),
    );
  }
  const record = {
    measuredAt: new Date().toISOString(),
    node: process.version,
    rounds: Number(rounds),
    calls: { warmup: WARMUP_CALLS, latency: LATENCY_CALLS, throughput: THROUGHPUT_CALLS, callers: CALLERS },
    loadAverage: { before: round(loadBefore, 2), after: round(loadavg()[0] as number, 2) },
    figures,
  };
  if (process.env.WRITE === "1") {
    const { readFile, writeFile } = await import("node:fs/promises");
    const path = new URL("./results.json", import.meta.url);
    const results = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    results.warmPath = record;
    await writeFile(path, `${JSON.stringify(results, null, 2)}\n`);
  }
  console.log(JSON.stringify(record, (key, value) => (key === "samples" ? undefined : value), 2));
}
