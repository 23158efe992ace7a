// The first execute after warm(), in a process of its own (so this side's request path is as cold
// as a service's that just started), then the second one, and how long warm() took (the container's
// start and both sides' priming). Prints one JSON line.
// bench/run.ts runs it as a child: node --conditions=source --import tsx bench/first-call.ts <artifact>

import { Runtime } from "ociapp-runtime";

const artifact = process.argv[2];
if (!artifact) throw new Error("usage: bench/first-call.ts <artifact.ociapp>");
const PAYLOAD = { value: "hello" };
const runtime = new Runtime();
try {
  let start = process.hrtime.bigint();
  await runtime.warm(artifact);
  const warmMs = Number(process.hrtime.bigint() - start) / 1e6;
  start = process.hrtime.bigint();
  await runtime.execute(artifact, PAYLOAD);
  const firstUs = Number(process.hrtime.bigint() - start) / 1000;
  start = process.hrtime.bigint();
  await runtime.execute(artifact, PAYLOAD);
  const secondUs = Number(process.hrtime.bigint() - start) / 1000;
  process.stdout.write(`${JSON.stringify({ firstUs, secondUs, warmMs })}\n`);
} finally {
  await runtime.close();
}
