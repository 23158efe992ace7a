import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ProtocolError, type Runtime, type RuntimeOptions } from "../src/index.js";
import { createRuntime } from "../src/internal/create-runtime.js";
import type { Call } from "../src/pool/call.js";
import { Instance } from "../src/pool/instance.js";
import { PRIME_REQUESTS } from "../src/pool/prime.js";
import { type Reply, rejection } from "./support/outcomes.js";
import { ProcessEngine } from "./support/process-engine.js";

// warm()'s priming against real `ociapp serve` processes (the process engine): prime requests run
// both sides' request path without the app's execute, and leave no trace in counts or events.

const DIGEST = `sha256:${"a".repeat(64)}`;
const HOSTILE = fileURLToPath(new URL("./support/hostile-server.mjs", import.meta.url));

describe("warm() priming over the process engine", () => {
  let socketDir: string;
  let artifactDir: string;
  let artifact: string;
  let engine: ProcessEngine;
  const runtimes: Runtime[] = [];

  beforeEach(async () => {
    socketDir = await mkdtemp(join(tmpdir(), "rt-prime-"));
    artifactDir = await mkdtemp(join(tmpdir(), "rt-prime-artifacts-"));
    artifact = join(artifactDir, "behaviours.ociapp");
    await writeFile(artifact, "stands for an artifact: the test's readIndex names its digest");
    engine = new ProcessEngine();
    engine.artifacts.set(artifact, DIGEST);
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await Promise.all(runtimes.splice(0).map((runtime) => runtime.close()));
    await rm(socketDir, { recursive: true, force: true });
    await rm(artifactDir, { recursive: true, force: true });
  });

  function runtime(options: RuntimeOptions = {}, now?: () => number): Runtime {
    const created = createRuntime(
      { engine, socketDir, startupTimeout: 15_000, ...options },
      { readIndex: async () => ({ digest: DIGEST }), ...(now ? { now } : {}) },
    );
    runtimes.push(created);
    return created;
  }

  it("sends prime requests the app answers without execute; no call is counted or reported", async () => {
    const primes: Call[] = [];
    const send = Instance.prototype.send;
    vi.spyOn(Instance.prototype, "send").mockImplementation(function (this: Instance, call: Call) {
      if (call.prime) primes.push(call);
      send.call(this, call);
    });
    const events: unknown[] = [];
    const record = (message: unknown): void => {
      events.push(message);
    };
    for (const name of ["ociapp:call:sent", "ociapp:call:settled"]) subscribe(name, record);
    try {
      const rt = runtime();
      await rt.warm(artifact);
      expect(primes.length).toBeGreaterThan(0);
      expect(primes.length).toBeLessThanOrEqual(PRIME_REQUESTS);
      expect(primes.every((call) => call.settled)).toBe(true);
      expect(events).toEqual([]);
      expect(rt.stats().artifacts[0]?.containers[0]?.callsServed).toBe(0);
      // The app's execute ran for this call only.
      expect((await rt.execute<Reply>(artifact, { op: "executes" })).value).toBe(1);
      expect(rt.stats().artifacts[0]?.containers[0]?.callsServed).toBe(1);
      expect(events).toHaveLength(2);
    } finally {
      for (const name of ["ociapp:call:sent", "ociapp:call:settled"]) unsubscribe(name, record);
    }
  });

  it("rejects with the signal's reason when it is aborted while priming", async () => {
    const controller = new AbortController();
    const reason = new Error("the caller gave up");
    const send = Instance.prototype.send;
    vi.spyOn(Instance.prototype, "send").mockImplementation(function (this: Instance, call: Call) {
      if (call.prime && !controller.signal.aborted) controller.abort(reason);
      send.call(this, call);
    });
    const rt = runtime();
    expect(await rejection(rt.warm(artifact, { signal: controller.signal }))).toBe(reason);
    // The container it started serves later calls.
    expect((await rt.execute<Reply>(artifact, { op: "echo", value: 1 })).value).toBe(1);
  });

  it("sends no prime frame to an app that does not list prime-request (an older SDK)", async () => {
    // It breaks the protocol at the first request or prime frame it reads.
    engine.command = (_spec, socketPath) => [process.execPath, HOSTILE, "unknown-id", socketPath];
    const rt = runtime({ startupTimeout: 2_000 });
    await rt.warm(artifact);
    expect(rt.stats().artifacts[0]?.instances.ready).toBe(1);
    // The first frame it takes for a request is the first real call's.
    expect(await rejection(rt.execute(artifact, { op: "echo", value: 1 }))).toBeInstanceOf(ProtocolError);
  });

  it("stops at the first prime request that finds no free slot, without queueing or starting anything", async () => {
    const rt = runtime({ maxConcurrency: 1, maxInstances: 1 });
    await rt.warm(artifact);
    // A real call holds the only slot: a prime request now fails at once and starts nothing.
    const busy = rt.execute<Reply>(artifact, { op: "sleep", ms: 300, value: "busy" });
    const primeCall = (rt as unknown as { primeCall(path: string): Promise<unknown> }).primeCall(artifact);
    await expect(primeCall).rejects.toThrow("no free slot for a prime request");
    expect(rt.stats().artifacts[0]?.queued).toBe(0);
    expect(rt.stats().artifacts[0]?.coldStarts).toBe(1);
    expect((await busy).value).toBe("busy");
  });
});
