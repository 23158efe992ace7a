// Cold start against the engine's floor, per image (one per Node major, and per OCI runtime), in
// interleaved rounds of one run: each round measures, for every target in turn, the floor (create +
// start until a bare Node client says hello, bench/engine-floor.ts) and the first execute on a new
// Runtime (image loaded). Rounds alternate the order of the targets, so a noisy minute lands on all.
// Run alone: node --conditions=source --import tsx bench/coldstart.ts <label>=<artifact.ociapp>...

import { Runtime } from "ociapp-runtime";
import { measureEngineFloor } from "./engine-floor.js";
import { round, timeIt } from "./measure.js";

const PAYLOAD = { value: "hello" };

export interface Spread {
  median: number;
  min: number;
  max: number;
  samples: number[];
}

export function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    median: round(sorted[Math.floor(sorted.length / 2)] ?? Number.NaN),
    min: round(sorted[0] ?? Number.NaN),
    max: round(sorted.at(-1) ?? Number.NaN),
    samples: values.map((value) => round(value)),
  };
}

export interface ColdTarget {
  /** What the figures are filed under ("node20", "node22-runsc", ...). */
  label: string;
  /** The .ociapp file. */
  artifact: string;
  /** Its manifest digest (the floor runs the image the runtime loaded under its own name). */
  image: string;
  /** The OCI runtime: "runc" (default) or "runsc". */
  runtime?: string;
}

export interface ColdFigures {
  label: string;
  runtime: string;
  engineFloorMs: Spread;
  firstExecuteMs: Spread;
  /** Median of the per-round differences (each cold start minus the floor of its own round). */
  aboveFloorMs: number;
}

/** Every target's floor and cold start, `rounds` times, interleaved. The images must be loaded. */
export async function measureColdStarts(
  targets: ColdTarget[],
  rounds: number,
  log: (line: string) => void = () => undefined,
): Promise<ColdFigures[]> {
  const floors = new Map<string, number[]>(targets.map((t) => [t.label, []]));
  const colds = new Map<string, number[]>(targets.map((t) => [t.label, []]));
  const diffs = new Map<string, number[]>(targets.map((t) => [t.label, []]));
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? targets : [...targets].reverse();
    for (const target of order) {
      const runtime = target.runtime ?? "runc";
      const floor = await measureEngineFloor(target.image, runtime);
      const rt = new Runtime({ container: { runtime } });
      let cold: number;
      try {
        cold = (await timeIt(() => rt.execute(target.artifact, PAYLOAD))).ms;
      } finally {
        await rt.close();
      }
      floors.get(target.label)?.push(floor);
      colds.get(target.label)?.push(cold);
      diffs.get(target.label)?.push(cold - floor);
      log(`cold start: round ${i + 1} ${target.label}: floor ${round(floor)} ms, first execute ${cold} ms`);
    }
  }
  return targets.map((target) => ({
    label: target.label,
    runtime: target.runtime ?? "runc",
    engineFloorMs: spread(floors.get(target.label) ?? []),
    firstExecuteMs: spread(colds.get(target.label) ?? []),
    aboveFloorMs: spread(diffs.get(target.label) ?? []).median,
  }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { readArtifactIndex } = await import("ociapp/artifact");
  const { artifactReference } = await import("../packages/ociapp-runtime/src/images/names.js");
  const targets: ColdTarget[] = [];
  for (const arg of process.argv.slice(2)) {
    const [label = "", rest = ""] = arg.split("=");
    const [artifact = "", runtime] = rest.split("@");
    const { digest } = await readArtifactIndex(artifact);
    targets.push({ label, artifact, image: artifactReference(digest), ...(runtime ? { runtime } : {}) });
    const warm = new Runtime({ container: { runtime: runtime ?? "runc" } });
    await warm.execute(artifact, PAYLOAD).finally(() => warm.close());
  }
  const rounds = Number(process.env.ROUNDS ?? 5);
  const figures = await measureColdStarts(targets, rounds, (line) =>
    process.stderr.write(`[bench] ${line}\n`),
  );
  for (const f of figures) {
    console.log(
      `${f.label.padEnd(14)} floor ${f.engineFloorMs.median} ms [${f.engineFloorMs.min}-${f.engineFloorMs.max}]  cold ${f.firstExecuteMs.median} ms [${f.firstExecuteMs.min}-${f.firstExecuteMs.max}]  above floor ${f.aboveFloorMs} ms`,
    );
  }
}
