import { appendFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Runtime } from "ociapp-runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "../../../tests/engine/docker.js";
import { type BuildResult, build } from "../src/index.js";
import { runCli } from "./helpers/cli.js";
import { extractLayout } from "./helpers/oci.js";
import { type TempProject, tempProject } from "./helpers/projects.js";

// The bundled entry end to end: a managed build bundles the app when it safely can, falls back to
// the installed files when the app reads its own location, and the Runtime runs what was built.
// The fixture app answers with the script Node started, the file its own code was compiled from,
// and whether the image holds the bundle.

interface Where {
  script: string;
  loadedFrom: string;
  bundleInImage: boolean;
}

const BUNDLE = "/app/.ociapp/serve.mjs";
const INSTALLED = "/app/node_modules/ociapp/bin/ociapp.js";

let project: TempProject | undefined;
let outputDir = "";
const images: string[] = [];
const runtime = new Runtime({ startupTimeout: 30_000 });
let bundled: BuildResult;
let unbundled: BuildResult;
let fallback: BuildResult;
let fallbackCli: { exitCode: number; stderr: string };

function imageName(tag: string): string {
  const name = `ociapp-build-test/bundle-app:${tag}-${process.pid}`;
  images.push(name);
  return name;
}

async function entrypointOf(result: BuildResult): Promise<string[]> {
  const layout = await extractLayout(result.path);
  const manifest = layout.json.get(`blobs/sha256/${result.digest.slice(7)}`) as {
    config: { digest: string };
  };
  const config = layout.json.get(`blobs/sha256/${manifest.config.digest.slice(7)}`) as {
    config: { Entrypoint: string[] };
  };
  return config.config.Entrypoint;
}

beforeAll(async () => {
  project = await tempProject("bundle-app", { install: true });
  outputDir = await mkdtemp(join(tmpdir(), "ociapp-build-bundle-out-"));
  const dir = project.dir;
  bundled = await build({
    projectRoot: dir,
    outputDir: join(outputDir, "a"),
    network: "host",
    image: imageName("a"),
  });
  unbundled = await build({
    projectRoot: dir,
    outputDir: join(outputDir, "b"),
    network: "host",
    image: imageName("b"),
    bundle: false,
  });
  // The same app reading import.meta.url: the build must not bundle it. Built through the CLI, whose
  // one line says so.
  await appendFile(join(dir, "main.mjs"), "export const here = new URL('.', import.meta.url).href;\n");
  const image = imageName("c");
  fallbackCli = await runCli([
    dir,
    "--output-dir",
    join(outputDir, "c"),
    "--network",
    "host",
    "--image",
    image,
  ]);
  fallback = await build({ projectRoot: dir, outputDir: join(outputDir, "c"), network: "host", image });
});

afterAll(async () => {
  await runtime.close();
  for (const image of images) await docker(["image", "rm", "-f", image]).catch(() => undefined);
  await project?.cleanup();
  if (outputDir) await rm(outputDir, { recursive: true, force: true });
});

describe("a bundled entry", () => {
  it("is what the image's entrypoint runs, and the app's code comes from it", async () => {
    expect(bundled.entry.bundled).toBe(true);
    expect(bundled.entry.note).toMatch(
      /^bundled the entry \(\d+ modules, \d+ KiB\): the image runs \/app\/\.ociapp\/serve\.mjs$/,
    );
    expect(await entrypointOf(bundled)).toEqual(["node", BUNDLE, "serve", "--app", "main.mjs#app"]);
    const where = (await runtime.execute(bundled.path, {})) as Where;
    expect(where.script).toBe(BUNDLE);
    expect(where.bundleInImage).toBe(true);
    // The app module was evaluated from the bundle, not imported from /app/main.mjs (which would
    // have loaded a second SDK and a second zod beside the bundled ones).
    expect(where.loadedFrom).toContain(`file://${BUNDLE}`);
    expect(where.loadedFrom).not.toContain("/app/main.mjs");
  });

  it("can be turned off: bundle: false runs the installed files", async () => {
    expect(unbundled.entry).toEqual({
      bundled: false,
      note: "not bundling the entry: turned off (bundle: false / --no-bundle); the image runs the installed files",
    });
    expect(await entrypointOf(unbundled)).toEqual(["node", INSTALLED, "serve", "--app", "main.mjs#app"]);
    const where = (await runtime.execute(unbundled.path, {})) as Where;
    expect(where).toEqual({
      script: INSTALLED,
      loadedFrom: expect.stringContaining("file:///app/main.mjs"),
      bundleInImage: false,
    });
  });
});

describe("an app that reads import.meta.url", () => {
  it("falls back to the installed files, and the build says why in one line", async () => {
    expect(fallback.entry.bundled).toBe(false);
    expect(fallback.entry.note).toBe(
      "not bundling the entry: main.mjs reads import.meta.url; the image runs the installed files",
    );
    expect(fallbackCli.exitCode).toBe(0);
    expect(fallbackCli.stderr).toContain(`ociapp-build: ${fallback.entry.note}\n`);
    expect(await entrypointOf(fallback)).toEqual(["node", INSTALLED, "serve", "--app", "main.mjs#app"]);
    const where = (await runtime.execute(fallback.path, {})) as Where;
    expect(where.script).toBe(INSTALLED);
    expect(where.loadedFrom).toContain("file:///app/main.mjs");
    expect(where.bundleInImage).toBe(false);
  });
});
