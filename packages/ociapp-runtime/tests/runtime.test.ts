import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Runtime, type RuntimeOptions } from "../src/index.js";
import { ProcessEngine } from "./support/process-engine.js";

const DIGEST = `sha256:${"a".repeat(64)}`;
let ARTIFACT = "";

interface Reply {
  value: unknown;
  host: string;
  pid: number;
}

describe("Runtime over the process engine", () => {
  let socketDir: string;
  let artifactDir: string;
  let engine: ProcessEngine;
  const runtimes: Runtime[] = [];

  beforeEach(async () => {
    socketDir = await mkdtemp(join(tmpdir(), "rt-unit-"));
    artifactDir = await mkdtemp(join(tmpdir(), "rt-artifacts-"));
    ARTIFACT = join(artifactDir, "behaviours.ociapp");
    await writeFile(ARTIFACT, "stands for an artifact: the test's readIndex names its digest");
    engine = new ProcessEngine();
    engine.artifacts.set(ARTIFACT, DIGEST);
  });

  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((runtime) => runtime.close()));
    expect(engine.containers.size).toBe(0);
    expect(await readdir(socketDir)).toEqual([]);
    await rm(socketDir, { recursive: true, force: true });
    await rm(artifactDir, { recursive: true, force: true });
  });

  function runtime(options: RuntimeOptions = {}): Runtime {
    const created = new Runtime(
      { engine, socketDir, startupTimeout: 15_000, ...options },
      {
        readIndex: async (path) => ({ digest: path.includes("other") ? `sha256:${"b".repeat(64)}` : DIGEST }),
      },
    );
    runtimes.push(created);
    return created;
  }

  it("answers an echo from a started container, loading the image once", async () => {
    const rt = runtime();
    const replies = await Promise.all([
      rt.execute<Reply>(ARTIFACT, { op: "echo", value: 1 }),
      rt.execute<Reply>(ARTIFACT, { op: "echo", value: 2 }),
    ]);
    expect(replies.map((reply) => reply.value)).toEqual([1, 2]);
    expect(engine.loads).toBe(1);
    const stats = rt.stats().artifacts[0];
    expect(stats?.coldStarts).toBe(1);
    expect(stats?.instances.ready).toBe(1);
  });
});
