import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { readProject } from "../src/project.js";
import { stageManagedBuild } from "../src/stage.js";
import { SDK_SPEC } from "../src/staged-package.js";

let work = "";
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ociapp-build-stage-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function write(path: string, content: string) {
  await mkdir(join(path, ".."), { recursive: true });
  await writeFile(path, content);
}

it("stages only the packed app files, the rewritten package.json and lockfile, and the Containerfile", async () => {
  const root = join(work, "app");
  await write(
    join(root, "package.json"),
    JSON.stringify({
      name: "staged",
      version: "1.0.0",
      type: "module",
      files: ["dist"],
      scripts: { build: "tsc" },
      dependencies: { ociapp: "file:vendor/ociapp.tgz", zod: "^4.0.0" },
      devDependencies: { typescript: "5.9.3" },
      ociapp: { entrypoint: "dist/main.js#app" },
    }),
  );
  await write(join(root, "dist/main.js"), "export const app = {};\n");
  await write(join(root, "dist/lib/util.js"), "export {};\n");
  await write(join(root, "dist/staged-0.9.0.ociapp"), "an earlier artifact built into dist/");
  await write(join(root, "src/main.ts"), "source stays on the host");
  await write(join(root, "node_modules/zod/package.json"), JSON.stringify({ name: "zod", version: "4.6.7" }));
  await write(
    join(root, "package-lock.json"),
    JSON.stringify({
      lockfileVersion: 3,
      packages: {
        "": { dependencies: { ociapp: "file:vendor/ociapp.tgz", zod: "^4.0.0" } },
        "node_modules/ociapp": { version: "0.1.0", resolved: "file:vendor/ociapp.tgz" },
        "node_modules/zod": { version: "4.6.7" },
      },
    }),
  );

  const project = await readProject(root);
  if (project.config.mode !== "managed") throw new Error("expected managed mode");
  const staging = join(work, "staging");
  await mkdir(staging);
  const { containerfile, installScripts } = await stageManagedBuild(project, project.config, staging, {
    baseImage: "node:20-bookworm-slim",
    check: true,
  });

  expect(containerfile).toBe(join(staging, "Containerfile"));
  // No dependency has an install script: the one-stage image, and no builder folder.
  expect(installScripts).toEqual([]);
  expect(await readFile(containerfile, "utf8")).not.toContain("AS builder");
  expect(await readdir(staging)).not.toContain("builder");
  expect(await readFile(containerfile, "utf8")).toContain("FROM node:20-bookworm-slim\n");
  const appFiles = (await readdir(join(staging, "app"), { recursive: true })).sort();
  expect(appFiles).toEqual(["dist", "dist/lib", "dist/lib/util.js", "dist/main.js"]);
  expect((await stat(join(staging, "app/dist/main.js"))).mode & 0o777).toBe(0o644);

  const stagedPackage = JSON.parse(await readFile(join(staging, "deps/package.json"), "utf8"));
  expect(stagedPackage.dependencies).toEqual({ zod: "^4.0.0", ociapp: SDK_SPEC }); // the lockfile pins zod
  expect(stagedPackage.scripts).toBeUndefined();
  expect(stagedPackage.devDependencies).toBeUndefined();
  const stagedLock = JSON.parse(await readFile(join(staging, "deps/package-lock.json"), "utf8"));
  expect(Object.keys(stagedLock.packages)).toEqual(["", "node_modules/zod"]);
});
