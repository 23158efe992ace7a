// Where a cold start's time goes, host side: every Engine call of a first execute on a new Runtime,
// timed from the execute, and the lifecycle events. Run alone, for profiling (not part of pnpm bench):
//   node --conditions=source --import tsx bench/cold-profile.ts <artifact.ociapp> [rounds]

import { subscribe } from "node:diagnostics_channel";
import { Server, type Socket } from "node:net";
import { DockerEngine, Runtime } from "ociapp-runtime";
import { round } from "./measure.js";

const artifact = process.argv[2];
if (!artifact) throw new Error("usage: bench/cold-profile.ts <artifact.ociapp> [rounds]");
const rounds = Number(process.argv[3] ?? 3);
let origin = 0;
let lines: string[] = [];
const at = () => round(performance.now() - origin);
const note = (what: string) => lines.push(`${String(at()).padStart(7)} ${what}`);

/** An engine whose every method notes its start and end. */
function timedEngine(): DockerEngine {
  const engine = new DockerEngine();
  const proto = Object.getPrototypeOf(engine) as Record<string, unknown>;
  for (const name of Object.getOwnPropertyNames(proto)) {
    const method = proto[name];
    if (name === "constructor" || typeof method !== "function") continue;
    (engine as unknown as Record<string, unknown>)[name] = async (...args: unknown[]) => {
      note(`${name} >`);
      try {
        return await (method as (...a: unknown[]) => Promise<unknown>).apply(engine, args);
      } finally {
        note(`${name} <`);
      }
    };
  }
  return engine;
}

// The container's connection: when the listener accepts it and when its first bytes (the hello) arrive.
const emit = Server.prototype.emit as (this: Server, event: string, ...args: unknown[]) => boolean;
(Server.prototype as { emit: typeof emit }).emit = function (this: Server, event, ...args) {
  if (event === "connection") {
    note("accepted");
    (args[0] as Socket).once("data", () => note("first bytes"));
  }
  return emit.call(this, event, ...args);
};

for (const channel of ["ociapp:container:started", "ociapp:container:ready"]) {
  subscribe(channel, () => note(channel));
}

for (let i = 0; i < rounds; i++) {
  const runtime = new Runtime({ engine: timedEngine() });
  lines = [];
  origin = performance.now();
  await runtime.execute(artifact, { value: "hello" });
  note("answered");
  await runtime.close();
  console.log(`round ${i + 1}\n${lines.join("\n")}`);
}
