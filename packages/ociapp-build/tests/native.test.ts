import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findInstallScripts } from "../src/native.js";

// Which production dependencies make a managed build two-stage: npm's hasInstallScript in a lockfile,
// else the installed tree's scripts, gypfile and binding.gyp.

let work = "";
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ociapp-build-native-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function write(path: string, content: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, typeof content === "string" ? content : JSON.stringify(content));
}

const app = { name: "app", version: "1.0.0", dependencies: { zod: "4.6.7", "better-sqlite3": "12.11.1" } };

describe("from a package-lock.json (v2/v3)", () => {
  it("takes hasInstallScript entries, but not dev ones or optional ones for another platform", async () => {
    const lock = {
      lockfileVersion: 3,
      packages: {
        "": { dependencies: app.dependencies },
        "node_modules/zod": { version: "4.6.7" },
        "node_modules/better-sqlite3": { version: "12.11.1", hasInstallScript: true },
        "node_modules/husky": { version: "9.0.0", hasInstallScript: true, dev: true },
        "node_modules/fsevents": { version: "2.3.3", hasInstallScript: true, optional: true, os: ["darwin"] },
        "node_modules/@scope/native": {
          version: "1.0.0",
          hasInstallScript: true,
          optional: true,
          os: ["linux"],
        },
        "node_modules/a/node_modules/nested": { name: "nested", version: "0.1.0", hasInstallScript: true },
      },
    };
    expect(await findInstallScripts(work, app, lock)).toEqual([
      "@scope/native@1.0.0",
      "better-sqlite3@12.11.1",
      "nested@0.1.0",
    ]);
  });

  it("none: the one-stage image", async () => {
    const lock = { lockfileVersion: 3, packages: { "": {}, "node_modules/zod": { version: "4.6.7" } } };
    expect(await findInstallScripts(work, app, lock)).toEqual([]);
  });
});

describe("from the installed tree (pnpm's layout, or no lockfile)", () => {
  it("finds install scripts, gypfile and binding.gyp through symlinked packages and their own dependencies", async () => {
    const root = join(work, "tree");
    const store = join(root, "node_modules/.pnpm");
    const pkg = (name: string, version: string) => join(store, `${name}@${version}/node_modules/${name}`);
    // better-sqlite3: an install script and a binding.gyp; its dependency prebuild-install: none.
    await write(join(pkg("better-sqlite3", "12.11.1"), "package.json"), {
      name: "better-sqlite3",
      version: "12.11.1",
      scripts: { install: "prebuild-install || node-gyp rebuild --release" },
      dependencies: { "prebuild-install": "^7.1.1", "gyp-only": "1.0.0" },
    });
    await write(join(store, "better-sqlite3@12.11.1/node_modules/prebuild-install/package.json"), {
      name: "prebuild-install",
      version: "7.1.3",
    });
    // A binding.gyp and no script: npm runs `node-gyp rebuild` for it.
    await write(join(store, "better-sqlite3@12.11.1/node_modules/gyp-only/package.json"), {
      name: "gyp-only",
      version: "1.0.0",
    });
    await write(join(store, "better-sqlite3@12.11.1/node_modules/gyp-only/binding.gyp"), "{}");
    await write(join(pkg("zod", "4.6.7"), "package.json"), { name: "zod", version: "4.6.7", gypfile: false });
    await mkdir(join(root, "node_modules"), { recursive: true });
    await symlink(pkg("better-sqlite3", "12.11.1"), join(root, "node_modules/better-sqlite3"));
    await symlink(pkg("zod", "4.6.7"), join(root, "node_modules/zod"));

    expect(await findInstallScripts(root, app, undefined)).toEqual([
      "better-sqlite3@12.11.1",
      "gyp-only@1.0.0",
    ]);
    // A v1 lockfile has no hasInstallScript: the tree decides.
    expect(await findInstallScripts(root, app, { lockfileVersion: 1, dependencies: {} })).toEqual([
      "better-sqlite3@12.11.1",
      "gyp-only@1.0.0",
    ]);
  });

  it("skips what is not installed, and walks a dependency cycle once", async () => {
    const root = join(work, "cycle");
    await write(join(root, "node_modules/a/package.json"), {
      name: "a",
      version: "1.0.0",
      dependencies: { b: "1" },
      scripts: { postinstall: "node setup.js" },
    });
    await write(join(root, "node_modules/b/package.json"), {
      name: "b",
      version: "1.0.0",
      dependencies: { a: "1" },
    });
    const project = { name: "x", version: "1.0.0", dependencies: { a: "1", missing: "1" } };
    expect(await findInstallScripts(root, project, undefined)).toEqual(["a@1.0.0"]);
  });
});
