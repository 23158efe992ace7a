import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, expectTypeOf, it } from "vitest";
import {
  ArtifactError,
  type Executor,
  isDigest,
  LocalExecutor,
  Runtime,
  RuntimeClosedError,
} from "../src/index.js";
import { createRuntime } from "../src/internal/create-runtime.js";
import { ProcessEngine } from "./support/process-engine.js";

// Runtime as an Executor: the alias, naming an artifact by a digest it resolved, drain().

const DIGEST = `sha256:${"a".repeat(64)}`;

describe("Runtime as Executor", () => {
  let socketDir: string;
  let artifactDir: string;
  let artifact: string;
  let engine: ProcessEngine;
  let runtime: Runtime;

  beforeEach(async () => {
    socketDir = await mkdtemp(join(tmpdir(), "rt-exec-"));
    artifactDir = await mkdtemp(join(tmpdir(), "rt-exec-artifacts-"));
    artifact = join(artifactDir, "behaviours.ociapp");
    await writeFile(artifact, "stands for an artifact");
    engine = new ProcessEngine();
    engine.artifacts.set(artifact, DIGEST);
    runtime = createRuntime(
      { engine, socketDir, startupTimeout: 15_000 },
      { readIndex: async () => ({ digest: DIGEST }) },
    );
  });

  afterEach(async () => {
    await runtime.close();
    expect([...engine.containers.values()].map((container) => container.state)).toEqual([]);
    expect(await readdir(socketDir)).toEqual([]);
    await rm(socketDir, { recursive: true, force: true });
    await rm(artifactDir, { recursive: true, force: true });
  });

  it("is an Executor, also exported as LocalExecutor", () => {
    expect(LocalExecutor).toBe(Runtime);
    expectTypeOf(runtime).toMatchTypeOf<Executor>();
    expect(isDigest(DIGEST)).toBe(true);
    expect(isDigest("sha256:ABC")).toBe(false);
    expect(isDigest(artifact)).toBe(false);
  });

  it("names an artifact by a digest it resolved from a path, and refuses an unknown digest", async () => {
    const unknown = `sha256:${"c".repeat(64)}`;
    await expect(runtime.execute(unknown, { op: "echo", value: 1 })).rejects.toBeInstanceOf(ArtifactError);
    await expect(runtime.warm(unknown)).rejects.toBeInstanceOf(ArtifactError);
    expect(await runtime.execute(artifact, { op: "echo", value: 1 })).toMatchObject({ value: 1 });
    expect(await runtime.execute(DIGEST, { op: "echo", value: 2 })).toMatchObject({ value: 2 });
    await runtime.warm(DIGEST);
  });

  it("drain() lets calls in flight finish, stops the containers, and later calls start new ones", async () => {
    await runtime.warm(artifact);
    expect(engine.created).toBe(1);
    const running = runtime.execute(artifact, { op: "sleep", ms: 300 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await runtime.drain(DIGEST);
    await expect(running).resolves.toMatchObject({ value: 300 });
    expect(runtime.stats().artifacts.flatMap((entry) => entry.containers)).toEqual([]);
    expect([...engine.containers.values()].filter((c) => c.state !== "exited")).toEqual([]);
    expect(await runtime.execute(artifact, { op: "echo", value: 3 })).toMatchObject({ value: 3 });
    expect(engine.created).toBe(2);
    await runtime.drain(artifact);
    await runtime.drain(`sha256:${"d".repeat(64)}`); // nothing to drain
    await runtime.close();
    await expect(runtime.execute(artifact, null)).rejects.toBeInstanceOf(RuntimeClosedError);
  });
});
