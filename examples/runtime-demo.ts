// The runtime demo (the seed's runtime_demo.py): several calls to one artifact, a wait past the idle
// timeout so the reaper stops the container, then a call again (a new cold start). Along the way: the
// container's log lines (the `logs` option with the ready-made stderrLogs() sink), the spans of a
// cold and a warm call (OpenTelemetry, kept in memory for the demo), and the image load's progress
// from the ociapp:image:load diagnostics channel when a load takes over a second.
//
//   pnpm demo                     builds what it needs, then runs this
//   node --conditions=source --import tsx examples/runtime-demo.ts dist/echo-app-0.1.0.ociapp

import { subscribe } from "node:diagnostics_channel";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { context } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { type ImageLoadMessage, Runtime, stderrLogs } from "ociapp-runtime";

const artifact = resolve(process.argv[2] ?? "dist/echo-app-0.1.0.ociapp");
const IDLE_TIMEOUT_MS = 2_000;

// --- Observability for the demo -----------------------------------------------------------------
// A service would install its OpenTelemetry SDK (an OTLP exporter, say); the demo keeps the spans in
// memory and prints them. The context manager lets execute() see the caller's active span.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = tracerProvider.getTracer("runtime-demo");

// Image loads: progress every second once a load has taken over a second (issue 15).
let loadStarted = 0;
let loadReported = 0;
subscribe("ociapp:image:load", (message) => {
  const { phase, sentBytes, totalBytes } = message as ImageLoadMessage;
  const now = performance.now();
  const mib = (bytes: number) => (bytes / 1024 ** 2).toFixed(1);
  const seconds = `${((now - loadStarted) / 1000).toFixed(1)} s`;
  if (phase === "start") {
    loadStarted = now;
    loadReported = now;
  } else if (phase === "progress" && now - loadStarted >= 1_000 && now - loadReported >= 1_000) {
    loadReported = now;
    const percent = totalBytes > 0 ? ` (${Math.round((sentBytes / totalBytes) * 100)}%)` : "";
    console.log(`  image load: ${mib(sentBytes)} of ${mib(totalBytes)} MiB sent${percent}, ${seconds}`);
  } else if (phase !== "progress" && now - loadStarted >= 1_000) {
    console.log(`  image load ${phase === "done" ? "done" : "FAILED"} after ${seconds}`);
  }
});

/** Prints the last call's spans (ended since the last print) as a tree: name, duration, key attributes. */
async function printSpans(): Promise<void> {
  await sleep(25); // the runtime records a settled call's spans in batches, within 10 ms
  const spans = exporter.getFinishedSpans();
  exporter.reset();
  const ids = new Set(spans.map((span) => span.spanContext().spanId));
  const print = (span: ReadableSpan, depth: number) => {
    const ms = span.duration[0] * 1e3 + span.duration[1] / 1e6;
    const keys = [
      "ociapp.call.cold_start",
      "ociapp.call.image_load",
      "ociapp.call.outcome",
      "ociapp.container.id",
    ];
    const attributes = keys
      .filter((key) => span.attributes[key] !== undefined)
      .map((key) => `${key.split(".").at(-1)}=${String(span.attributes[key]).slice(0, 12)}`);
    const duration = ms >= 10 ? `${ms.toFixed(0)} ms` : `${(ms * 1000).toFixed(0)} us`;
    console.log(
      `  ${"  ".repeat(depth)}${span.name.padEnd(26 - depth * 2)} ${duration.padStart(8)}  ${attributes.join(" ")}`,
    );
    const children = spans.filter((child) => child.parentSpanContext?.spanId === span.spanContext().spanId);
    for (const child of children.sort(
      (a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1],
    ))
      print(child, depth + 1);
  };
  const roots = spans.filter((span) => !ids.has(span.parentSpanContext?.spanId ?? ""));
  const last = roots.at(-1);
  if (last) print(last, 0);
}
// --------------------------------------------------------------------------------------------------

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
  // The caller's span: execute() makes its ociapp.execute span a child of it.
  const response = await tracer.startActiveSpan(`demo ${label} call`, async (span) => {
    try {
      return await runtime.execute(artifact, { value });
    } finally {
      span.end();
    }
  });
  console.log(`  ${label.padEnd(6)} ${elapsed(start).padStart(8)}  ${JSON.stringify(response)}`);
}

await using runtime = new Runtime({
  idleTimeout: IDLE_TIMEOUT_MS,
  reaperInterval: 250,
  // Every line the containers write, on this process's stderr: "[echo-app@0.1.0 <container> stderr] ..."
  logs: stderrLogs(),
  telemetry: { tracerProvider },
});
console.log(`artifact: ${artifact}`);

console.log("first call (loads the image if the engine lacks it, starts a container):");
await call(runtime, "hello", "cold");
console.log("its spans:");
await printSpans();
console.log("more calls on the warm container:");
for (const value of ["world", "from", "ociapp"]) await call(runtime, value, "warm");
console.log("the last one's spans:");
await printSpans();

const start = process.hrtime.bigint();
const burst = await Promise.all(
  Array.from({ length: 100 }, (_, i) => runtime.execute(artifact, { value: `#${i}` })),
);
console.log(`  100 concurrent calls in ${elapsed(start)}; last: ${JSON.stringify(burst.at(-1))}`);
await sleep(25); // past the runtime's 10 ms batch, which records the burst's spans
exporter.reset(); // the burst's spans: not printed
console.log(`pool: ${instances(runtime)}`);

console.log(`waiting ${(IDLE_TIMEOUT_MS + 1_000) / 1000} s, past the idle timeout...`);
await sleep(IDLE_TIMEOUT_MS + 1_000);
console.log(`pool: ${instances(runtime)}`);

console.log("a call after the reaper stopped the container (a new cold start):");
await call(runtime, "again", "cold");
await printSpans();
console.log(`pool: ${instances(runtime)}`);
