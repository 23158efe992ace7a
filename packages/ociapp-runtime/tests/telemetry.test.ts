import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  context,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  type Tracer,
  type TracerProvider,
  trace,
} from "@opentelemetry/api";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ArtifactError,
  channels,
  OptionsError,
  RemoteExecutionError,
  RequestTimeoutError,
  type Runtime,
  type RuntimeOptions,
} from "../src/index.js";
import { createRuntime } from "../src/internal/create-runtime.js";
import { telemetrySubscribed } from "../src/observability/telemetry.js";
import { msBetween, TestTelemetry } from "./support/otel.js";
import { type Reply, rejection } from "./support/outcomes.js";
import { ProcessEngine } from "./support/process-engine.js";

// The OpenTelemetry integration (observability/telemetry.ts) over the process engine, with the SDK's
// in-memory exporter and a metric reader collected on demand. runtime-telemetry.engine.test.ts runs
// the same against Docker.

const DIGEST = `sha256:${"c".repeat(64)}`;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

describe("telemetry over the process engine", () => {
  let socketDir: string;
  let artifactDir: string;
  let artifact: string;
  let engine: ProcessEngine;
  let otel: TestTelemetry;
  const runtimes: Runtime[] = [];

  beforeEach(async () => {
    socketDir = await mkdtemp(join(tmpdir(), "rt-otel-"));
    artifactDir = await mkdtemp(join(tmpdir(), "rt-otel-artifacts-"));
    artifact = join(artifactDir, "behaviours.ociapp");
    await writeFile(artifact, "stands for an artifact: the test's readIndex names its digest");
    engine = new ProcessEngine();
    engine.artifacts.set(artifact, DIGEST);
    otel = new TestTelemetry();
  });

  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((runtime) => runtime.close()));
    // Every runtime closed: the process-wide subscribers are gone with the last one.
    expect(telemetrySubscribed()).toBe(false);
    expect(await readdir(socketDir)).toEqual([]);
    await otel.shutdown();
    await rm(socketDir, { recursive: true, force: true });
    await rm(artifactDir, { recursive: true, force: true });
  });

  function runtime(options: RuntimeOptions = {}): Runtime {
    const created = createRuntime(
      {
        engine,
        socketDir,
        startupTimeout: 15_000,
        telemetry: { tracerProvider: otel.tracerProvider, meterProvider: otel.meterProvider },
        ...options,
      },
      { readIndex: async () => ({ digest: DIGEST }) },
    );
    runtimes.push(created);
    return created;
  }

  it("gives each execute a CLIENT span under the caller's, and carries the caller's context to the app", async () => {
    const rt = runtime();
    const tracer = otel.tracerProvider.getTracer("test");
    const {
      cold,
      warm,
      traceId: callerTraceId,
      spanId: callerSpanId,
    } = await tracer.startActiveSpan("caller", async (caller) => {
      const cold = await rt.execute<Reply>(artifact, { op: "trace" });
      const warm = await rt.execute<Reply>(artifact, { op: "trace" });
      caller.end();
      return { cold, warm, ...caller.spanContext() };
    });
    const [first, second] = await otel.spans("ociapp.execute");
    if (!first || !second) throw new Error("expected two execute spans");
    for (const [span, reply] of [
      [first, cold],
      [second, warm],
    ] as const) {
      expect(span.kind).toBe(SpanKind.CLIENT);
      expect(span.spanContext().traceId).toBe(callerTraceId);
      expect(span.parentSpanContext?.spanId).toBe(callerSpanId);
      // The app saw the caller's context: same trace, the caller's span as its parent.
      const trace = reply.value as { traceparent: string };
      const [, traceId, parentId] = TRACEPARENT.exec(trace.traceparent) ?? [];
      expect(traceId).toBe(callerTraceId);
      expect(parentId).toBe(callerSpanId);
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
      expect(span.attributes).toMatchObject({
        "ociapp.call.outcome": "ok",
        "ociapp.artifact.digest": DIGEST,
        "ociapp.artifact.path": artifact,
        "ociapp.artifact.requested": artifact,
      });
      expect(span.attributes["ociapp.container.id"]).toMatch(/^[0-9a-f]{64}$/);
      expect(span.attributes["ociapp.call.container_time_ms"]).toBeGreaterThanOrEqual(0);
    }
    expect(second.attributes["ociapp.container.id"]).toBe(first.attributes["ociapp.container.id"]);

    // The cold call: queued while the image loaded and the container started, each a child span.
    expect(first.attributes).toMatchObject({
      "ociapp.call.cold_start": true,
      "ociapp.call.image_load": true,
    });
    expect(first.attributes["ociapp.call.queue_wait_ms"]).toBeGreaterThan(0);
    const phases = otel.childrenOf(first);
    expect([...phases.keys()].sort()).toEqual([
      "ociapp.container.call",
      "ociapp.container.start",
      "ociapp.image.load",
      "ociapp.queue",
    ]);
    const start = phases.get("ociapp.container.start");
    // Its time in the container, from the request's write to the answer.
    expect(phases.get("ociapp.container.call")?.attributes["ociapp.container.id"]).toBe(
      first.attributes["ociapp.container.id"],
    );
    expect(start?.attributes["ociapp.container.id"]).toBe(first.attributes["ociapp.container.id"]);
    expect(start?.attributes["ociapp.container.startup_ms"]).toBeGreaterThan(0);
    expect(phases.get("ociapp.image.load")?.attributes).toMatchObject({
      "ociapp.artifact.digest": DIGEST,
      "ociapp.image.outcome": "ok",
    });
    // Every phase lies within the execute span.
    for (const phase of phases.values()) {
      expect(msBetween(first.startTime, phase.startTime)).toBeGreaterThanOrEqual(-1);
      expect(msBetween(phase.endTime, first.endTime)).toBeGreaterThanOrEqual(-1);
    }

    // The warm call: sent at once to the ready container, one span with no children.
    expect(second.attributes).toMatchObject({
      "ociapp.call.cold_start": false,
      "ociapp.call.image_load": false,
      "ociapp.call.queue_wait_ms": 0,
    });
    expect(otel.childrenOf(second).size).toBe(0);
  });

  it("starts a root span for a caller with no active span, and sends the app no trace", async () => {
    const rt = runtime();
    const reply = await rt.execute<Reply>(artifact, { op: "trace" });
    const [span] = await otel.spans("ociapp.execute");
    expect(span?.parentSpanContext).toBeUndefined();
    expect(span?.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(reply.value).toBeNull();
  });

  it("times the execute span, started once the call settled, from execute() to the answer", async () => {
    const rt = runtime();
    await rt.warm(artifact);
    const before = performance.timeOrigin + performance.now();
    await rt.execute(artifact, { op: "sleep", ms: 50 });
    const after = performance.timeOrigin + performance.now();
    const [span] = await otel.spans("ociapp.execute");
    if (!span) throw new Error("expected an execute span");
    const startMs = span.startTime[0] * 1e3 + span.startTime[1] / 1e6;
    const endMs = span.endTime[0] * 1e3 + span.endTime[1] / 1e6;
    // Its start is the call's (not the batch's, 10 ms after it settled); its end the answer's.
    expect(startMs).toBeGreaterThanOrEqual(before - 1);
    expect(endMs).toBeLessThanOrEqual(after + 1);
    expect(msBetween(span.startTime, span.endTime)).toBeGreaterThanOrEqual(49);
    expect(span.attributes["ociapp.call.container_time_ms"]).toBeGreaterThanOrEqual(49);
  });

  it("carries an unsampled caller's context to the app, and records no span under it", async () => {
    const rt = runtime();
    const caller = trace.wrapSpanContext({
      traceId: "a".repeat(32),
      spanId: "b".repeat(16),
      traceFlags: TraceFlags.NONE,
    });
    const reply = await context.with(trace.setSpan(ROOT_CONTEXT, caller), () =>
      rt.execute<Reply>(artifact, { op: "trace" }),
    );
    expect(reply.value).toEqual({ traceparent: `00-${"a".repeat(32)}-${"b".repeat(16)}-00` });
    // The SDK's default sampler follows the parent: not sampled, no span; the call still counts.
    expect(await otel.spans("ociapp.execute")).toHaveLength(0);
    expect((await otel.points("ociapp.calls"))[0]?.value).toBe(1);
  });

  it("marks a failed call's span as an error with its code", async () => {
    const rt = runtime();
    await rt.warm(artifact);
    const thrown = await rejection(rt.execute(artifact, { op: "throw", message: "no such thing" }));
    expect(thrown).toBeInstanceOf(RemoteExecutionError);
    const timedOut = await rejection(rt.execute(artifact, { op: "sleep", ms: 60_000 }, { timeout: 100 }));
    expect(timedOut).toBeInstanceOf(RequestTimeoutError);
    const aborted = await rejection(
      rt.execute(artifact, { op: "sleep", ms: 60_000 }, { signal: AbortSignal.timeout(100) }),
    );
    expect((aborted as Error).name).toBe("TimeoutError");
    const [remote, timeout, abort] = await otel.spans("ociapp.execute");
    expect(remote?.status).toEqual({ code: SpanStatusCode.ERROR, message: "OCIAPP_REMOTE_EXECUTION" });
    expect(remote?.attributes).toMatchObject({
      "ociapp.call.outcome": "OCIAPP_REMOTE_EXECUTION",
      "error.type": "OCIAPP_REMOTE_EXECUTION",
    });
    // The exception event (semantic conventions: exception.type, exception.message).
    const exception = remote?.events.find((event) => event.name === "exception");
    expect(exception?.attributes?.["exception.message"]).toContain("no such thing");
    expect(timeout?.status).toEqual({ code: SpanStatusCode.ERROR, message: "OCIAPP_REQUEST_TIMEOUT" });
    expect(timeout?.attributes["error.type"]).toBe("OCIAPP_REQUEST_TIMEOUT");
    expect(abort?.attributes["ociapp.call.outcome"]).toBe("aborted");
    expect(abort?.status.code).toBe(SpanStatusCode.ERROR);
  });

  it("counts calls by artifact and outcome, latencies, cold starts, image loads and containers", async () => {
    const rt = runtime({ maxConcurrency: 1 });
    await rt.execute(artifact, { op: "echo", value: 1 });
    await rt.execute(artifact, { op: "echo", value: 2 });
    await rejection(rt.execute(artifact, { op: "throw", message: "x" }));
    // One call holds the only slot, so the next one waits in the queue while the gauge is read.
    const holding = rt.execute(artifact, { op: "sleep", ms: 1_500 });
    const waiting = rt.execute(artifact, { op: "echo", value: 3 });
    const queued = await otel.points("ociapp.queue.depth");
    expect(queued).toEqual([
      expect.objectContaining({
        value: 1,
        attributes: { "ociapp.artifact.digest": DIGEST, "ociapp.artifact.path": artifact },
      }),
    ]);
    await Promise.all([holding, waiting]);

    const calls = await otel.points("ociapp.calls");
    const byOutcome = Object.fromEntries(
      calls.map((point) => [point.attributes["ociapp.call.outcome"], point.value]),
    );
    expect(byOutcome).toEqual({ ok: 4, OCIAPP_REMOTE_EXECUTION: 1 });
    expect(calls.every((point) => point.attributes["ociapp.artifact.digest"] === DIGEST)).toBe(true);
    const latency = await otel.histogram("ociapp.call.duration");
    const okLatency = latency.find((point) => point.attributes["ociapp.call.outcome"] === "ok");
    expect(okLatency?.value.count).toBe(4);
    expect(okLatency?.value.min).toBeGreaterThan(0);
    expect(await otel.points("ociapp.container.cold_starts")).toEqual([
      expect.objectContaining({
        value: 1,
        attributes: expect.objectContaining({ "ociapp.artifact.digest": DIGEST }),
      }),
    ]);
    expect((await otel.histogram("ociapp.container.startup.duration"))[0]?.value.count).toBe(1);
    expect(await otel.points("ociapp.image.loads")).toEqual([
      expect.objectContaining({
        value: 1,
        attributes: expect.objectContaining({ "ociapp.image.outcome": "ok" }),
      }),
    ]);
    const containers = await otel.points("ociapp.containers");
    const byState = Object.fromEntries(
      containers.map((point) => [point.attributes["ociapp.container.state"], point.value]),
    );
    expect(byState).toEqual({ starting: 0, ready: 1, draining: 0, stopping: 0 });
    expect((await otel.points("ociapp.queue.depth"))[0]?.value).toBe(0);
    expect(await otel.points("ociapp.logs.dropped")).toEqual([expect.objectContaining({ value: 0 })]);

    // Closed: the counters keep their totals for the service's last collection; the gauges say 0.
    await rt.close();
    const closed = await otel.points("ociapp.calls");
    expect(
      Object.fromEntries(closed.map((point) => [point.attributes["ociapp.call.outcome"], point.value])),
    ).toEqual({ ok: 4, OCIAPP_REMOTE_EXECUTION: 1 });
    expect((await otel.points("ociapp.containers")).map((point) => point.value)).toEqual([0, 0, 0, 0]);
    expect((await otel.points("ociapp.queue.depth")).map((point) => point.value)).toEqual([0]);
  });

  it("serves several runtimes with one set of subscribers, each runtime its own providers", async () => {
    const other = new TestTelemetry();
    try {
      const a = runtime();
      const b = runtime({
        telemetry: { tracerProvider: other.tracerProvider, meterProvider: other.meterProvider },
      });
      const off = runtime({ telemetry: false });
      // Their call ids never collide (one counter per process), so no span takes another's events.
      await Promise.all([
        a.execute(artifact, { op: "echo", value: "a" }),
        b.execute(artifact, { op: "echo", value: "b" }),
        off.execute(artifact, { op: "echo", value: "off" }),
      ]);
      await a.execute(artifact, { op: "echo", value: "a" });
      expect(await otel.spans("ociapp.execute")).toHaveLength(2);
      expect(await other.spans("ociapp.execute")).toHaveLength(1);
      const ids = [...(await otel.spans("ociapp.execute")), ...(await other.spans("ociapp.execute"))].map(
        (span) => span.attributes["ociapp.call.id"],
      );
      expect(new Set(ids).size).toBe(3);
      expect((await other.points("ociapp.calls"))[0]?.value).toBe(1);
      // One runtime closing leaves the others reporting.
      await b.close();
      expect(telemetrySubscribed()).toBe(true);
      await a.execute(artifact, { op: "echo", value: "a" });
      expect(await otel.spans("ociapp.execute")).toHaveLength(3);
    } finally {
      await other.shutdown();
    }
  });

  it("sends no trace and records nothing when off, or with no SDK installed", async () => {
    const off = runtime({ telemetry: false });
    expect(telemetrySubscribed()).toBe(false);
    expect((await off.execute<Reply>(artifact, { op: "trace" })).value).toBeNull();
    // true: the global providers, which are no-ops here (no SDK registered globally).
    const global = runtime({ telemetry: true });
    expect(telemetrySubscribed()).toBe(true);
    const tracer = otel.tracerProvider.getTracer("test");
    const reply = await tracer.startActiveSpan("caller", async (caller) => {
      const answered = await global.execute<Reply>(artifact, { op: "trace" });
      caller.end();
      return answered;
    });
    // Without an SDK the caller's context still goes on: the app joins the caller's trace.
    const caller = (await otel.spans("caller"))[0];
    expect((reply.value as { traceparent: string }).traceparent).toBe(
      `00-${caller?.spanContext().traceId}-${caller?.spanContext().spanId}-01`,
    );
    expect(await otel.spans("ociapp.execute")).toHaveLength(0);
  });

  it("shows a failed image load as an ERROR phase of the calls that waited for it, and counts it", async () => {
    engine.loadImage = async (path: string) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      throw new ArtifactError(path, "the engine refused the artifact");
    };
    const rt = runtime();
    const failures = await Promise.all([
      rejection(rt.execute(artifact, { op: "echo", value: 1 })),
      rejection(rt.execute(artifact, { op: "echo", value: 2 })),
    ]);
    expect(failures.every((error) => error instanceof ArtifactError)).toBe(true);
    const spans = await otel.spans("ociapp.execute");
    expect(spans).toHaveLength(2);
    for (const span of spans) {
      expect(span.attributes).toMatchObject({
        "ociapp.call.outcome": "OCIAPP_ARTIFACT",
        "ociapp.call.image_load": true,
        "ociapp.call.cold_start": false,
      });
      const load = otel.childrenOf(span).get("ociapp.image.load");
      expect(load?.status.code).toBe(SpanStatusCode.ERROR);
      expect(load?.attributes["ociapp.image.outcome"]).toBe("failed");
    }
    expect(await otel.points("ociapp.image.loads")).toEqual([
      expect.objectContaining({
        value: 1,
        attributes: expect.objectContaining({ "ociapp.image.outcome": "failed" }),
      }),
    ]);
  });

  it("keeps a trace that another ociapp:call:created subscriber set first", async () => {
    const traceparent = `00-${"1".repeat(32)}-${"2".repeat(16)}-01`;
    const first = (message: unknown) => {
      (message as { trace?: { traceparent: string } }).trace = { traceparent };
    };
    // Subscribed before the runtime's telemetry: it runs first.
    channels.callCreated.subscribe(first);
    try {
      const rt = runtime();
      const reply = await rt.execute<Reply>(artifact, { op: "trace" });
      expect(reply.value).toEqual({ traceparent });
      expect(await otel.spans("ociapp.execute")).toHaveLength(1);
    } finally {
      channels.callCreated.unsubscribe(first);
    }
  });

  it("costs a faulty tracer its telemetry, never a call", async () => {
    const broken = () => {
      throw new Error("a broken tracer");
    };
    const faulty: TracerProvider = {
      getTracer: () => ({ startSpan: broken, startActiveSpan: broken }) as unknown as Tracer,
    };
    const rt = runtime({ telemetry: { tracerProvider: faulty } });
    expect((await rt.execute<Reply>(artifact, { op: "echo", value: "fine" })).value).toBe("fine");
  });

  it("refuses a malformed telemetry option with OptionsError", () => {
    const bad: unknown[] = [
      "yes",
      1,
      null,
      [],
      { tracerProvider: {} },
      { meterProvider: 3 },
      { exporter: {} },
    ];
    for (const telemetry of bad) {
      expect(() => runtime({ telemetry } as unknown as RuntimeOptions), String(telemetry)).toThrow(
        OptionsError,
      );
    }
    expect(telemetrySubscribed()).toBe(false);
  });
});
