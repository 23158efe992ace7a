// The runtime demo (the seed's runtime_demo.py): several calls to one artifact, a wait past the idle
// timeout so the reaper stops the container, then a call again (a new cold start).
//
//   pnpm demo                     builds what it needs, then runs this
//   node --conditions=source --import tsx examples/runtime-demo.ts dist/echo-app-0.1.0.ociapp

import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Runtime } from "ociapp-runtime";

const artifact = resolve(process.argv[2] ?? "dist/echo-app-0.1.0.ociapp");
const IDLE_TIMEOUT_MS = 2_000;

function elapsed(start: bigint): string {
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  return ms >= 10 ? `${ms.toFixed(0)} ms` : `${(ms * 1000).toFixed(0)} us`;
}

function instances(runtime: Runtime): string {
  const stats = runtime.stats().artifacts[0];
  if (!stats) return "no pool yet";
  const live = Object.entries(stats.instances)
    .filter(([, count]) => count > 0)
    .map(([state, count]) => `${count} ${state}`);
  return `${live.join(", ") || "0 containers"}; cold starts so far: ${stats.coldStarts}`;
}

async function call(runtime: Runtime, value: string, label: string): Promise<void> {
  const start = process.hrtime.bigint();
  const response = await runtime.execute(artifact, { value });
  console.log(`  ${label.padEnd(6)} ${elapsed(start).padStart(8)}  ${JSON.stringify(response)}`);
}

await using runtime = new Runtime({ idleTimeout: IDLE_TIMEOUT_MS, reaperInterval: 250 });
console.log(`artifact: ${artifact}`);

console.log("first call (loads the image if the engine lacks it, starts a container):");
await call(runtime, "hello", "cold");
console.log("more calls on the warm container:");
for (const value of ["world", "from", "ociapp"]) await call(runtime, value, "warm");

const start = process.hrtime.bigint();
const burst = await Promise.all(
  Array.from({ length: 100 }, (_, i) => runtime.execute(artifact, { value: `#${i}` })),
);
console.log(`  100 concurrent calls in ${elapsed(start)}; last: ${JSON.stringify(burst.at(-1))}`);
console.log(`pool: ${instances(runtime)}`);

console.log(`waiting ${(IDLE_TIMEOUT_MS + 1_000) / 1000} s, past the idle timeout...`);
await sleep(IDLE_TIMEOUT_MS + 1_000);
console.log(`pool: ${instances(runtime)}`);

console.log("a call after the reaper stopped the container (a new cold start):");
await call(runtime, "again", "cold");
console.log(`pool: ${instances(runtime)}`);
