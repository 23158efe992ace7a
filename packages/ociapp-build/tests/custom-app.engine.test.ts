import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspectArtifact } from "ociapp/artifact";
import { afterAll, beforeAll, expect, it } from "vitest";
import { docker } from "../../../tests/engine/docker.js";
import { type BuildResult, build } from "../src/index.js";
import { type RunningApp, removeImage, startApp, uniqueImage } from "./helpers/container.js";
import { type TempProject, tempProject } from "./helpers/projects.js";

// Custom mode: the project's own Containerfile, the project root as the build context, and the base
// image handed over as the OCIAPP_BASE_IMAGE build argument.

let project: TempProject | undefined;
let outputDir = "";
let image = "";
let result: BuildResult;
let running: RunningApp | undefined;

beforeAll(async () => {
  project = await tempProject("custom-app");
  outputDir = await mkdtemp(join(tmpdir(), "ociapp-build-custom-out-"));
  image = uniqueImage("custom-app");
  result = await build({ projectRoot: project.dir, outputDir, network: "host", image, compression: "zstd" });
  await docker(["load", "-i", result.path]);
});

afterAll(async () => {
  await running?.stop();
  await removeImage(image);
  if (outputDir) await rm(outputDir, { recursive: true, force: true });
  await project?.cleanup();
});

it("records the annotations, and compresses the layers it built with zstd", async () => {
  const info = await inspectArtifact(result.path);
  expect(result.path).toBe(join(outputDir, "custom-app-0.2.0.ociapp"));
  expect(info).toMatchObject({
    title: "custom-app",
    version: "0.2.0",
    entrypoint: "main.mjs#app",
    digest: result.digest,
  });
  // The project has no SDK installed (the image installs it): no protocol is recorded.
  expect(info.protocol).toBeUndefined();
  expect(info.annotations["dev.ociapp.protocol"]).toBeUndefined();
  expect(info.layers.some((layer) => layer.mediaType === "application/vnd.oci.image.layer.v1.tar+zstd")).toBe(
    true,
  );
});

it("runs the image its Containerfile describes", async () => {
  running = await startApp(image);
  expect(await running.request({ value: "custom" })).toEqual({
    type: "response",
    id: "r1",
    payload: { value: "custom", uid: 10002, cwd: "/srv/custom", marker: "built by a custom Containerfile" },
  });
});
