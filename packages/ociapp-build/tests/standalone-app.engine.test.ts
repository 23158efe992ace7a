import { readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { readArtifactIndex } from "ociapp/artifact";
import { afterAll, beforeAll, expect, it } from "vitest";
import { docker } from "../../../tests/engine/docker.js";
import type { BuildResult } from "../src/index.js";
import { runCli } from "./helpers/cli.js";
import { type RunningApp, removeImage, startApp, uniqueImage } from "./helpers/container.js";
import { type TempProject, tempProject } from "./helpers/projects.js";

// A plain npm project outside the workspace (a temporary folder with its own package-lock.json and
// the SDK vendored as a tarball), built through the real CLI with --json and the default output folder.

let project: TempProject | undefined;
let image = "";
let result: BuildResult;
let running: RunningApp | undefined;

beforeAll(async () => {
  project = await tempProject("standalone-app", { install: true });
  image = uniqueImage("standalone-echo");
  const cli = await runCli([
    project.dir,
    "--network",
    "host",
    "--image",
    image,
    "--json",
    "--progress",
    "quiet",
  ]);
  if (cli.exitCode !== 0) throw new Error(`ociapp-build failed: ${cli.stderr}`);
  const lines = cli.stdout.trim().split("\n");
  expect(lines).toHaveLength(1);
  result = JSON.parse(lines[0] ?? "") as BuildResult;
  await docker(["load", "-i", result.path]);
});

afterAll(async () => {
  await running?.stop();
  await removeImage(image);
  await project?.cleanup();
});

it("prints one JSON line and writes the flattened scoped name into the project root", async () => {
  expect(Object.keys(result).sort()).toEqual([
    "bytes",
    "digest",
    "entry",
    "image",
    "native",
    "path",
    "reused",
  ]);
  // An npm project with its lockfile bundles like the workspace's echo-app.
  expect(result).toMatchObject({ reused: false, native: [], entry: { bundled: true } });
  expect(result.path).toBe(join(project?.dir ?? "", "acme-standalone-echo-1.2.3.ociapp"));
  expect(result.bytes).toBe((await stat(result.path)).size);
  expect(result.image).toBe(image);
  // The vendored SDK it packed speaks protocol 2, and the artifact says so.
  expect((await readArtifactIndex(result.path)).protocol).toBe(2);
});

it("installs the locked dependency versions and the vendored SDK inside the image", async () => {
  const lock = JSON.parse(await readFile(join(project?.dir ?? "", "package-lock.json"), "utf8")) as {
    packages: Record<string, { version: string }>;
  };
  const inImage = async (path: string) =>
    JSON.parse(await docker(["run", "--rm", "--network", "none", "--entrypoint", "cat", image, path])) as {
      version: string;
    };
  expect((await inImage("/app/node_modules/zod/package.json")).version).toBe(
    lock.packages["node_modules/zod"]?.version,
  );
  expect((await inImage("/app/node_modules/ociapp/package.json")).version).toBe("0.2.0");
  // The app's own files are there, its vendor folder and node_modules from the host are not.
  const listing = await docker([
    "run",
    "--rm",
    "--network",
    "none",
    "--entrypoint",
    "ls",
    image,
    "-A",
    "/app",
  ]);
  expect(listing.split("\n").filter(Boolean).sort()).toEqual([
    ".ociapp",
    "main.mjs",
    "node_modules",
    "package-lock.json",
    "package.json",
  ]);
});

it("a container with no network connects to the host's socket and answers", async () => {
  running = await startApp(image);
  expect(running.hello).toMatchObject({ type: "hello", app: { name: "standalone-echo", version: "1.2.3" } });
  expect(await running.request({ value: "standalone" })).toEqual({
    type: "response",
    id: "r1",
    payload: { value: "standalone", uid: 10001, cwd: "/app", node: process.version },
  });
});

it("leaves no temporary file beside the artifact", async () => {
  const { readdir } = await import("node:fs/promises");
  const leftovers = (await readdir(project?.dir ?? "")).filter((name) => name.includes(".tmp-"));
  expect(leftovers).toEqual([]);
  await rm(result.path);
});
