import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { docker } from "../../../tests/engine/docker.js";
import { type BuildResult, build } from "../src/index.js";
import { type RunningApp, removeImage, startApp, uniqueImage } from "./helpers/container.js";
import { type TempProject, tempProject } from "./helpers/projects.js";

// A managed build with "systemPackages": ["jq"]: apt-get runs in the image build (network host), and
// the app shells out to jq inside its container.

let project: TempProject | undefined;
let outputDir = "";
let image = "";
let result: BuildResult;
let running: RunningApp | undefined;

beforeAll(async () => {
  project = await tempProject("jq-app", { install: true });
  outputDir = await mkdtemp(join(tmpdir(), "ociapp-build-jq-out-"));
  image = uniqueImage("jq-app");
  const started = performance.now();
  result = await build({ projectRoot: project.dir, outputDir, network: "host", image });
  console.log(`jq-app build: ${((performance.now() - started) / 1000).toFixed(1)} s, ${result.bytes} bytes`);
  await docker(["load", "-i", result.path]);
});

afterAll(async () => {
  await running?.stop();
  await removeImage(image);
  if (outputDir) await rm(outputDir, { recursive: true, force: true });
  await project?.cleanup();
});

it("installs the system package in the image", async () => {
  const version = await docker([
    "run",
    "--rm",
    "--network",
    "none",
    "--entrypoint",
    "jq",
    image,
    "--version",
  ]);
  expect(version.trim()).toMatch(/^jq-1\.\d+/);
});

it("the app runs jq inside its container, answering over the socket", async () => {
  running = await startApp(image);
  const answer = await running.request({
    filter: "{sum: (.a + .b)}",
    input: { a: 40, b: 2 },
  });
  expect(answer).toEqual({ type: "response", id: "r1", payload: { output: '{"sum":42}' } });
});
