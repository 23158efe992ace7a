import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { bundleEntry } from "../src/bundle.js";

// bundleEntry with the real esbuild on a small project and a stand-in SDK whose main() prints what
// the bundle hands it: the bundle is made and runs, or the build is told why not and no bundle is
// left in the context. (bundle-policy.test.ts covers every decision; bundle.engine.test.ts the image.)

const run = promisify(execFile);
let work = "";
let app = "";
let sdk = "";
let staging = "";

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), "ociapp-build-bundle-"));
  app = join(work, "app");
  sdk = join(work, "sdk");
  staging = join(work, "staging");
  await mkdir(join(sdk, "dist"), { recursive: true });
  await mkdir(app, { recursive: true });
  await mkdir(staging, { recursive: true });
  await writeFile(
    join(sdk, "dist", "cli.js"),
    "export async function main(argv, { bundledApp }) {\n" +
      "  const ns = await bundledApp.load();\n" +
      "  console.log(JSON.stringify({ command: argv.slice(2), module: bundledApp.module, exports: Object.keys(ns) }));\n" +
      "}\n",
  );
});

afterEach(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const bundle = () =>
  bundleEntry({
    projectRoot: app,
    entryModule: "main.mjs",
    sdkDir: sdk,
    stagingDir: staging,
    dependencies: new Set(),
  });
const staged = () => join(staging, "bundle", "serve.mjs");

describe("bundleEntry", () => {
  it("stages one module that hands main() the app's module, which runs", async () => {
    await writeFile(join(app, "lib.mjs"), "export const greeting = 'hello';\n");
    // A `require` of the app's own does not clash with the bundle's banner: esbuild renames it.
    await writeFile(
      join(app, "main.mjs"),
      "import { greeting } from './lib.mjs';\nconst require = 1;\nexport const app = greeting + require;\n",
    );
    const outcome = await bundle();
    expect(outcome).toMatchObject({ bundled: true, modules: 3 });
    const { stdout } = await run(process.execPath, [staged(), "serve", "--app", "main.mjs#app"], {
      cwd: app,
    });
    expect(JSON.parse(stdout)).toEqual({
      command: ["serve", "--app", "main.mjs#app"],
      module: "main.mjs",
      exports: ["app"],
    });
  });

  it("an app that reads import.meta.url: not bundled, and nothing staged", async () => {
    await writeFile(join(app, "main.mjs"), "export const app = new URL('.', import.meta.url);\n");
    expect(await bundle()).toEqual({ bundled: false, reason: "main.mjs reads import.meta.url" });
    await expect(stat(join(staging, "bundle"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("an import esbuild cannot resolve: its error, in one line", async () => {
    await writeFile(join(app, "main.mjs"), "import pad from 'left-pad';\nexport const app = pad;\n");
    const outcome = await bundle();
    expect(outcome).toEqual({
      bundled: false,
      reason: expect.stringMatching(/^esbuild failed: Could not resolve "left-pad" \(.*main\.mjs\)$/),
    });
    await expect(stat(join(staging, "bundle"))).rejects.toMatchObject({ code: "ENOENT" });
  });
});
