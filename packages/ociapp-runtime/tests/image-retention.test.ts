import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { EngineImage } from "../src/engines/engine.js";
import { artifactReference } from "../src/images/names.js";
import type { Runtime, RuntimeOptions } from "../src/index.js";
import { createRuntime } from "../src/internal/create-runtime.js";
import { ProcessEngine } from "./support/process-engine.js";

// Retention driven by a Runtime against an engine that keeps images in memory: the reaper runs the
// passes, the shared record is refreshed for what the runtime uses, and close() ends a pass.

const DIGEST = `sha256:${"d".repeat(64)}`;
const IDLE = `sha256:${"e".repeat(64)}`;
const IN_USE = `sha256:${"f".repeat(64)}`;

class ImageEngine extends ProcessEngine {
  readonly marks: string[] = [];
  readonly removed: string[][] = [];
  listCalls = 0;
  /** When set, listImages waits on it (an engine that does not answer). */
  hang: Promise<void> | undefined;
  readonly listed = new Map<string, EngineImage>();

  add(digest: string, lastUsed: number, inUse = false): void {
    this.listed.set(digest, {
      id: digest,
      names: [artifactReference(digest)],
      artifacts: [digest],
      size: 1000,
      lastUsed,
      inUse,
    });
  }

  async markImageUsed(digest: string): Promise<void> {
    this.marks.push(digest);
    const image = this.listed.get(digest);
    if (image) image.lastUsed = Date.now();
  }

  async listImages(signal?: AbortSignal): Promise<EngineImage[]> {
    this.listCalls++;
    if (this.hang) {
      await new Promise<void>((_, reject) => signal?.addEventListener("abort", () => reject(signal.reason)));
    }
    return [...this.listed.values()].map((image) => ({ ...image }));
  }

  async removeImageNames(names: string[]): Promise<boolean> {
    this.removed.push(names);
    for (const [digest, image] of this.listed)
      if (image.names.includes(names.at(-1) as string)) this.listed.delete(digest);
    return true;
  }
}

describe("image retention in a Runtime", () => {
  let socketDir: string;
  let artifact: string;
  let engine: ImageEngine;
  const runtimes: Runtime[] = [];

  beforeEach(async () => {
    socketDir = await mkdtemp(join(tmpdir(), "rt-retention-"));
    artifact = join(socketDir, "app.ociapp");
    await writeFile(artifact, "stands for an artifact");
    engine = new ImageEngine();
    engine.images.add(DIGEST);
  });

  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((runtime) => runtime.close()));
    await rm(socketDir, { recursive: true, force: true });
  });

  function runtime(options: RuntimeOptions = {}): Runtime {
    const created = createRuntime(
      { engine, socketDir: join(socketDir, "run"), startupTimeout: 15_000, ...options },
      { readIndex: async () => ({ digest: DIGEST }) },
    );
    runtimes.push(created);
    return created;
  }

  it("never reaches the engine before the first call", async () => {
    runtime({ reaperInterval: 10, images: { interval: 10 } });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(engine.listCalls).toBe(0);
    expect(engine.marks).toEqual([]);
  });

  it("from the reaper: refreshes the record of what it uses, removes an idle image, keeps one in use and its own", async () => {
    engine.add(DIGEST, 0);
    engine.add(IDLE, 0);
    engine.add(IN_USE, 0, true);
    const rt = runtime({ reaperInterval: 20, images: { idleTimeout: 60_000, interval: 50 } });
    await rt.execute(artifact, { op: "echo", value: 1 });
    // The image found in the engine is marked used before its container starts.
    expect(engine.marks).toContain(DIGEST);
    const deadline = Date.now() + 10_000;
    while (rt.stats().images.removed < 1 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect(rt.stats().images).toMatchObject({ removed: 1, lastError: undefined });
    expect(engine.removed).toEqual([[artifactReference(IDLE)]]);
    expect([...engine.listed.keys()].sort()).toEqual([DIGEST, IN_USE].sort());
    // Passes go on at the interval, each refreshing the record of the artifact in use.
    const marks = engine.marks.length;
    while (engine.marks.length < marks + 2 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect(engine.marks.length).toBeGreaterThanOrEqual(marks + 2);
  });

  it("pruneImages runs a pass now; close() ends a pass the engine does not answer", async () => {
    engine.add(IDLE, 0);
    const rt = runtime({ images: { idleTimeout: 1 } });
    expect(await rt.pruneImages()).toMatchObject({ removed: 1 });
    engine.hang = new Promise(() => undefined);
    const pass = rt.pruneImages();
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await rt.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await pass).lastError).toBeDefined();
  });
});
