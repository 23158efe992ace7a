import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "ociapp-build";
import { RemoteExecutionError, Runtime } from "ociapp-runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "./docker.js";

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
