import { describe, expect, it } from "vitest";
import { BuildError } from "../src/errors.js";
import { SDK_SPEC, stageLockfile, stagePackageJson } from "../src/staged-package.js";

const installed: Record<string, string> = { zod: "4.6.7", "left-pad": "1.3.0" };
const options = (hasLockfile: boolean) => ({
  hasLockfile,
  installedVersion: (name: string) => installed[name],
});

describe("stagePackageJson", () => {
  const workspaceApp = {
    name: "echo-app",
    version: "0.1.0",
    type: "module",
    scripts: { build: "tsc", prepare: "tsc" },
    dependencies: { ociapp: "workspace:*", zod: "^4.0.0", "left-pad": "catalog:" },
    devDependencies: { typescript: "5.9.3" },
    packageManager: "pnpm@12.4.2",
    ociapp: { entrypoint: "dist/main.js#app" },
  };

  it("points the SDK at the packed tarball, pins deps to installed versions, drops scripts and dev deps", () => {
    expect(stagePackageJson(workspaceApp, options(false))).toEqual({
      name: "echo-app",
      version: "0.1.0",
      type: "module",
      dependencies: { zod: "4.6.7", "left-pad": "1.3.0", ociapp: SDK_SPEC },
      ociapp: { entrypoint: "dist/main.js#app" },
    });
  });

  it("keeps declared ranges when a lockfile pins the tree", () => {
    expect(stagePackageJson(workspaceApp, options(true)).dependencies).toEqual({
      zod: "^4.0.0",
      "left-pad": "catalog:",
      ociapp: SDK_SPEC,
    });
  });

  it("adds the SDK even when the app lists it only as a devDependency", () => {
    const staged = stagePackageJson(
      { name: "a", version: "1.0.0", devDependencies: { ociapp: "file:../ociapp.tgz" } },
      options(true),
    );
    expect(staged.dependencies).toEqual({ ociapp: SDK_SPEC });
  });

  it("refuses other local dependencies with one line naming them", () => {
    for (const spec of ["workspace:^", "link:../lib", "file:../lib"]) {
      const attempt = () =>
        stagePackageJson({ name: "a", version: "1.0.0", dependencies: { lib: spec } }, options(false));
      expect(attempt).toThrow(BuildError);
      expect(attempt).toThrow(`dependencies.lib is "${spec}"`);
    }
  });

  it("leaves git and URL specs alone", () => {
    const deps = { a: "github:acme/a#v1", b: "https://example.com/b.tgz", c: "npm:zod@4.6.7" };
    expect(
      stagePackageJson({ name: "x", version: "1.0.0", dependencies: deps }, options(false)).dependencies,
    ).toEqual({
      ...deps,
      ociapp: SDK_SPEC,
    });
  });
});

describe("stageLockfile", () => {
  it("removes the SDK's tarball entry and keeps every other pin", () => {
    const lock = {
      lockfileVersion: 3,
      packages: {
        "": {
          name: "app",
          dependencies: { ociapp: "file:vendor/ociapp.tgz", zod: "4.6.7" },
          devDependencies: { t: "1" },
        },
        "node_modules/ociapp": {
          version: "0.1.0",
          resolved: "file:vendor/ociapp.tgz",
          integrity: "sha512-x",
        },
        "node_modules/zod": { version: "4.6.7", resolved: "https://registry.npmjs.org/zod/-/zod-4.6.7.tgz" },
      },
    };
    expect(stageLockfile(lock)).toEqual({
      lockfileVersion: 3,
      packages: {
        "": { name: "app", dependencies: { ociapp: SDK_SPEC, zod: "4.6.7" } },
        "node_modules/zod": { version: "4.6.7", resolved: "https://registry.npmjs.org/zod/-/zod-4.6.7.tgz" },
      },
    });
    expect(lock.packages["node_modules/ociapp"]).toBeDefined(); // the input is not modified
  });

  it("removes a linked SDK's entries under the link target", () => {
    const lock = {
      lockfileVersion: 3,
      packages: {
        "": { dependencies: { ociapp: "file:../ociapp" } },
        "node_modules/ociapp": { resolved: "../ociapp", link: true },
        "../ociapp": { version: "0.1.0", dependencies: { commander: "14.0.3" } },
        "../ociapp/node_modules/commander": { version: "14.0.3" },
        "node_modules/zod": { version: "4.6.7" },
      },
    };
    expect(Object.keys((stageLockfile(lock) as typeof lock).packages)).toEqual(["", "node_modules/zod"]);
  });
});
