// runc beside runsc (gVisor) for the same artifact, in interleaved rounds of one run: cold start (the
// first execute on a new Runtime, image loaded), warm p50, and throughput with 256 callers.
// Run alone: node --conditions=source --import tsx bench/sandboxes.ts <artifact.ociapp>
// (scripts/engine.sh runsc registers runsc with the engine).

import { Runtime } from "ociapp-runtime";
import { measureLatency, measureThroughput, ratio, round, timeIt } from "./measure.js";

export interface SandboxFigures {
  runtime: string;
  coldStartMs: { median: number; min: number; max: number };
  warmP50Us: { median: number; min: number; max: number };
  throughput256PerSecond: { median: number; min: number; max: number };
}

const PAYLOAD = { value: "hello" };

function spread(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    median: round(sorted[Math.floor(sorted.length / 2)] ?? Number.NaN),
    min: round(sorted[0] ?? Number.NaN),
    max: round(sorted.at(-1) ?? Number.NaN),
  };
}

async function round1(artifact: string, runtime: string) {
  const rt = new Runtime({ container: { runtime } });
  try {
    const cold = (await timeIt(() => rt.execute(artifact, PAYLOAD))).ms;
    const latency = await measureLatency(() => rt.execute(artifact, PAYLOAD), 2_000);
    const throughput = await measureThroughput(() => rt.execute(artifact, PAYLOAD), 256, 10_000);
    return { cold, p50: latency.p50Us, perSecond: throughput.callsPerSecond };
  } finally {
    await rt.close();
  }
}

/** `rounds` rounds, each runc then runsc (or the other way round on odd rounds). */
export async function measureSandboxes(
  artifact: string,
  rounds = 3,
  log: (line: string) => void = () => undefined,
): Promise<{
  figures: SandboxFigures[];
  runscVsRunc: { coldStart: number; warmP50: number; throughput256: number };
}> {
  const results: Record<string, { cold: number[]; p50: number[]; perSecond: number[] }> = {
    runc: { cold: [], p50: [], perSecond: [] },
    runsc: { cold: [], p50: [], perSecond: [] },
  };
  for (let i = 0; i < rounds; i++) {
    for (const runtime of i % 2 === 0 ? ["runc", "runsc"] : ["runsc", "runc"]) {
      const figures = await round1(artifact, runtime);
      log(
        `sandboxes: round ${i + 1} ${runtime}: cold ${round(figures.cold)} ms, p50 ${figures.p50} us, ${Math.round(figures.perSecond)}/s`,
      );
      const into = results[runtime] as { cold: number[]; p50: number[]; perSecond: number[] };
      into.cold.push(figures.cold);
      into.p50.push(figures.p50);
      into.perSecond.push(figures.perSecond);
    }
  }
  const figures = Object.entries(results).map(([runtime, r]) => ({
    runtime,
    coldStartMs: spread(r.cold),
    warmP50Us: spread(r.p50),
    throughput256PerSecond: spread(r.perSecond),
  }));
  const [runc, runsc] = figures as [SandboxFigures, SandboxFigures];
  return {
    figures,
    runscVsRunc: {
      coldStart: ratio(runsc.coldStartMs.median, runc.coldStartMs.median),
      warmP50: ratio(runsc.warmP50Us.median, runc.warmP50Us.median),
      throughput256: ratio(runsc.throughput256PerSecond.median, runc.throughput256PerSecond.median),
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const artifact = process.argv[2];
  if (!artifact) throw new Error("usage: bench/sandboxes.ts <artifact.ociapp>");
  const result = await measureSandboxes(artifact, 3, (line) => process.stderr.write(`[bench] ${line}\n`));
  console.log(JSON.stringify(result, null, 2));
}
