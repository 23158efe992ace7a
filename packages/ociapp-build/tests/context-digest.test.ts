import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { makeLayout, writeLayout } from "../../ociapp/tests/artifact-fixtures.js";
import {
  CONTEXT_ANNOTATION,
  type ContextInputs,
  contextDigest,
  reusableArtifact,
} from "../src/context-digest.js";

// The build context's digest decides whether an artifact is reused without running buildx.

let work = "";
let inputs: ContextInputs;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ociapp-build-digest-"));
  const staging = join(work, "staging");
  await mkdir(join(staging, "app/dist"), { recursive: true });
  await mkdir(join(staging, "empty"));
  await writeFile(join(staging, "Containerfile"), "FROM node:20-bookworm-slim\n");
  await writeFile(join(staging, "app/dist/main.js"), "export const app = 1;\n");
  inputs = {
    stagingDir: staging,
    exclude: [],
    toolVersion: "0.2.0",
    baseImage: "node:20-bookworm-slim",
    baseImageId: `sha256:${"a".repeat(64)}`,
    settings: { compression: "gzip", image: "echo-app:0.1.0" },
  };
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

it("is the same for the same inputs, and changes with a byte, a mode, a setting or the base image", async () => {
  const digest = await contextDigest(inputs);
  expect(digest).toMatch(/^sha256:[a-f0-9]{64}$/);
  expect(await contextDigest(inputs)).toBe(digest);
  expect(await contextDigest({ ...inputs, settings: { image: "echo-app:0.1.0", compression: "gzip" } })).toBe(
    digest,
  );

  expect(await contextDigest({ ...inputs, baseImageId: `sha256:${"b".repeat(64)}` })).not.toBe(digest);
  expect(await contextDigest({ ...inputs, settings: { ...inputs.settings, compression: "zstd" } })).not.toBe(
    digest,
  );
  expect(await contextDigest({ ...inputs, toolVersion: "0.3.0" })).not.toBe(digest);

  const main = join(inputs.stagingDir, "app/dist/main.js");
  await writeFile(main, "export const app = 2;\n");
  const edited = await contextDigest(inputs);
  expect(edited).not.toBe(digest);
  await chmod(main, 0o755);
  expect(await contextDigest(inputs)).not.toBe(edited);
  await writeFile(main, "export const app = 1;\n");
  await chmod(main, 0o644);
  expect(await contextDigest(inputs)).toBe(digest);
});

it("names files unambiguously: a renamed file is another context", async () => {
  const staging = join(work, "names");
  await mkdir(join(staging, "ab"), { recursive: true });
  await writeFile(join(staging, "ab/c"), "x");
  const one = await contextDigest({ ...inputs, stagingDir: staging });
  await rm(join(staging, "ab"), { recursive: true });
  await mkdir(join(staging, "a"), { recursive: true });
  await writeFile(join(staging, "a/bc"), "x");
  expect(await contextDigest({ ...inputs, stagingDir: staging })).not.toBe(one);
});

it("reuses an artifact only when its manifest records the same context", async () => {
  const digest = `sha256:${"c".repeat(64)}`;
  const path = join(work, "echo-app-0.1.0.ociapp");
  const layout = makeLayout({
    manifest: (manifest) => {
      (manifest.annotations as Record<string, string>)[CONTEXT_ANNOTATION] = digest;
    },
  });
  await writeLayout(path, layout.files);
  expect(await reusableArtifact(path, digest)).toEqual({
    digest: layout.manifestDigest,
    bytes: expect.any(Number),
  });
  expect(await reusableArtifact(path, `sha256:${"d".repeat(64)}`)).toBeUndefined();
  // No annotation, no file, not an artifact: built again.
  await writeLayout(join(work, "plain.ociapp"), makeLayout().files);
  expect(await reusableArtifact(join(work, "plain.ociapp"), digest)).toBeUndefined();
  expect(await reusableArtifact(join(work, "missing.ociapp"), digest)).toBeUndefined();
  await writeFile(join(work, "junk.ociapp"), "not a tar");
  expect(await reusableArtifact(join(work, "junk.ociapp"), digest)).toBeUndefined();
});
