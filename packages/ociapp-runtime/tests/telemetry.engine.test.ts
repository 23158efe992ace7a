import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { artifactReference } from "../src/images/names.js";
import { DockerEngine, LABELS, RemoteExecutionError, Runtime } from "../src/index.js";
import { telemetrySubscribed } from "../src/observability/telemetry.js";
import { type FixtureProject, fixtureProject } from "./support/fixture-build.js";
import { TestTelemetry } from "./support/otel.js";
import { type Reply, rejection } from "./support/outcomes.js";

// OpenTelemetry against the real Docker engine: the behaviours fixture in a container receives the
// caller's trace through the request frame (op "trace" answers context.trace), a cold call's phases
// (image load, container start) are child spans, a warm call is one span, a failed call is an error,
// and the metrics count what happened. The unit tests (telemetry.test.ts) cover the rest.

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

describe("telemetry against the Docker engine", () => {
  const engine = new DockerEngine();
  let fixture: FixtureProject;
  let artifact: { path: string; digest: string };
  let socketDir: string;
  let otel: TestTelemetry;

  beforeAll(async () => {
    fixture = await fixtureProject();
    artifact = await fixture.build();
    socketDir = await mkdtemp(join(tmpdir(), "ort-otel-"));
    otel = new TestTelemetry();
  });

  afterAll(async () => {
    await otel?.shutdown();
    if (artifact) {
      await promisify(execFile)("docker", ["image", "rm", "-f", artifactReference(artifact.digest)]).catch(
        () => undefined,
      );
    }
    if (socketDir) await rm(socketDir, { recursive: true, force: true });
    await fixture?.remove();
  });

  it("traces a cold and a warm call into the container, with the caller's trace id arriving in the app", async () => {
    const runtime = new Runtime({
      socketDir,
      telemetry: { tracerProvider: otel.tracerProvider, meterProvider: otel.meterProvider },
    });
    try {
      const tracer = otel.tracerProvider.getTracer("engine-test");
      const { cold, warm, traceId, spanId } = await tracer.startActiveSpan("caller", async (caller) => {
        const cold = await runtime.execute<Reply>(artifact.path, { op: "trace" });
        const warm = await runtime.execute<Reply>(artifact.path, { op: "trace" });
        caller.end();
        return { cold, warm, ...caller.spanContext() };
      });
      const thrown = await rejection(
        runtime.execute(artifact.path, { op: "throw", message: "from the app" }),
      );
      expect(thrown).toBeInstanceOf(RemoteExecutionError);

      const [first, second, failed] = await otel.spans("ociapp.execute");
      if (!first || !second || !failed) throw new Error("expected three execute spans");
      const [container] = await engine.listContainers({ [LABELS.runtime]: runtime.id });
      for (const [span, reply] of [
        [first, cold],
        [second, warm],
      ] as const) {
        expect(span.kind).toBe(SpanKind.CLIENT);
        expect(span.spanContext().traceId).toBe(traceId);
        expect(span.parentSpanContext?.spanId).toBe(spanId);
        // The app got the caller's context: its trace, the caller's span as its parent.
        const [, appTraceId, appParentId] =
          TRACEPARENT.exec((reply.value as { traceparent: string }).traceparent) ?? [];
        expect(appTraceId).toBe(traceId);
        expect(appParentId).toBe(spanId);
        expect(span.attributes).toMatchObject({
          "ociapp.artifact.digest": artifact.digest,
          "ociapp.artifact.path": artifact.path,
          "ociapp.call.outcome": "ok",
          "ociapp.container.id": container?.id,
        });
      }
      const imageLoaded = runtime.stats().artifacts[0]?.imageLoads === 1;
      console.info(`[telemetry.engine] image loaded by the runtime: ${imageLoaded}`);
      expect(first.attributes).toMatchObject({
        "ociapp.call.cold_start": true,
        "ociapp.call.image_load": imageLoaded,
      });
      const phases = otel.childrenOf(first);
      expect(phases.has("ociapp.queue")).toBe(true);
      expect(phases.has("ociapp.image.load")).toBe(imageLoaded);
      expect(phases.get("ociapp.container.start")?.attributes["ociapp.container.id"]).toBe(container?.id);
      expect(phases.has("ociapp.container.call")).toBe(true);
      expect(second.attributes).toMatchObject({
        "ociapp.call.cold_start": false,
        "ociapp.call.queue_wait_ms": 0,
      });
      expect(otel.childrenOf(second).size).toBe(0);
      expect(failed.status).toEqual({ code: SpanStatusCode.ERROR, message: "OCIAPP_REMOTE_EXECUTION" });
      expect(failed.attributes["error.type"]).toBe("OCIAPP_REMOTE_EXECUTION");

      const calls = await otel.points("ociapp.calls");
      expect(
        Object.fromEntries(calls.map((point) => [point.attributes["ociapp.call.outcome"], point.value])),
      ).toEqual({
        ok: 2,
        OCIAPP_REMOTE_EXECUTION: 1,
      });
      expect((await otel.points("ociapp.container.cold_starts"))[0]?.value).toBe(1);
      const ready = (await otel.points("ociapp.containers")).find(
        (point) => point.attributes["ociapp.container.state"] === "ready",
      );
      expect(ready?.value).toBe(1);
      if (imageLoaded) {
        expect((await otel.points("ociapp.image.loads"))[0]?.value).toBe(1);
        expect((await otel.points("ociapp.image.load.bytes"))[0]?.value).toBeGreaterThan(1024 * 1024);
      }
    } finally {
      await runtime.close();
    }
    expect(telemetrySubscribed()).toBe(false);
    expect(await engine.listContainers({ [LABELS.runtime]: runtime.id })).toEqual([]);
    expect(await readdir(socketDir)).toEqual([]);
  });
});
