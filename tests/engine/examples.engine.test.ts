import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BuildResult, build } from "ociapp-build";
import { RemoteExecutionError, Runtime } from "ociapp-runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "./docker.js";
import { buildHandwritten, type HandwrittenBuild } from "./sqlite-handwritten.js";

// The examples end to end, through all three packages: built with ociapp-build, executed by the
// Runtime in its default confinement.

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

describe("examples/jq-app", () => {
  let outputDir = "";
  let artifact = "";
  let image = "";
  const runtime = new Runtime({ startupTimeout: 30_000 });

  beforeAll(async () => {
    outputDir = await mkdtemp(join(tmpdir(), "ociapp-examples-"));
    image = `ociapp-examples-test/jq-app:${process.pid}`;
    const result = await build({
      projectRoot: join(ROOT, "examples/jq-app"),
      outputDir,
      network: "host",
      image,
    });
    artifact = result.path;
  });

  afterAll(async () => {
    await runtime.close();
    await docker(["image", "rm", "-f", image]).catch(() => undefined);
    if (outputDir) await rm(outputDir, { recursive: true, force: true });
  });

  it("runs jq, a system package of the image, on the caller's JSON", async () => {
    const response = await runtime.execute(artifact, {
      filter: ".items[] | select(.price > 10) | .name",
      input: {
        items: [
          { name: "a", price: 5 },
          { name: "b", price: 20 },
          { name: "c", price: 11 },
        ],
      },
    });
    expect(response).toEqual({ results: ["b", "c"] });
  });

  it("answers a bad filter with jq's own error, typed", async () => {
    const error = await runtime.execute(artifact, { filter: ".items[", input: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemoteExecutionError);
    expect((error as RemoteExecutionError).remote.type).toBe("JqError");
    expect((error as RemoteExecutionError).remote.message).toMatch(/syntax error/);
  });

  it("rejects a request that fails the app's schema", async () => {
    const error = await runtime.execute(artifact, { input: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemoteExecutionError);
    expect((error as RemoteExecutionError).remote.type).toBe("ValidationError");
  });
});

describe("examples/sqlite-app: a native module in a managed build", () => {
  let outputDir = "";
  let result: BuildResult;
  let handwritten: HandwrittenBuild;
  let image = "";
  const runtime = new Runtime({ startupTimeout: 30_000 });

  beforeAll(async () => {
    outputDir = await mkdtemp(join(tmpdir(), "ociapp-examples-sqlite-"));
    image = `ociapp-examples-test/sqlite-app:${process.pid}`;
    const started = performance.now();
    // No custom Containerfile: better-sqlite3's install script makes the build two-stage.
    result = await build({
      projectRoot: join(ROOT, "examples/sqlite-app"),
      outputDir,
      network: "host",
      image,
    });
    const managedMs = performance.now() - started;
    // The same app built by a hand-written two-stage Containerfile, in the same run.
    const handStarted = performance.now();
    handwritten = await buildHandwritten("two-stage", outputDir, { network: "host" });
    const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
    console.log(
      `sqlite-app: managed ${MiB(result.bytes)} (${result.bytes} bytes, ${(managedMs / 1000).toFixed(0)} s), ` +
        `hand-written two-stage ${MiB(handwritten.bytes)} (${handwritten.bytes} bytes, ${((performance.now() - handStarted) / 1000).toFixed(0)} s)`,
    );
  });

  afterAll(async () => {
    await runtime.close();
    await docker(["image", "rm", "-f", image]).catch(() => undefined);
    if (outputDir) await rm(outputDir, { recursive: true, force: true });
  });

  it("compiles better-sqlite3 in a builder stage", () => {
    expect(result.native).toEqual(["better-sqlite3@12.11.1"]);
    expect(result.reused).toBe(false);
  });

  it("is no larger than the hand-written two-stage build plus 10%", () => {
    expect(result.bytes).toBeLessThanOrEqual(handwritten.bytes * 1.1);
  });

  it("answers queries on its in-memory table through the Runtime", async () => {
    expect(
      await runtime.execute(artifactPath(), { op: "cheaper", category: "coffee", maxPrice: 350 }),
    ).toEqual({
      products: [
        { name: "espresso", category: "coffee", price: 250 },
        { name: "filter", category: "coffee", price: 300 },
      ],
    });
    expect(
      await runtime.execute(artifactPath(), {
        op: "insert",
        products: [{ name: "ristretto", category: "coffee", price: 240 }],
      }),
    ).toEqual({ count: 6 });
    const summary = (await runtime.execute(artifactPath(), { op: "summary" })) as {
      sqlite: string;
      categories: { category: string; count: number; min: number }[];
    };
    expect(summary.sqlite).toMatch(/^3\.\d+\.\d+$/);
    expect(summary.categories).toEqual([
      { category: "coffee", count: 4, min: 240, max: 380, average: 292.5 },
      { category: "tea", count: 2, min: 260, max: 280, average: 270 },
    ]);
  });

  it("rejects a request that fails the app's schema", async () => {
    const invalid = await runtime.execute(artifactPath(), { op: "drop" }).catch((e: unknown) => e);
    expect((invalid as RemoteExecutionError).remote.type).toBe("ValidationError");
  });

  const artifactPath = () => result.path;
});
