import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { Application } from "../src/application.js";
import type { BundledApp } from "../src/cli/bundled-app.js";
import { loadApp } from "../src/cli/load-app.js";

// The bundled-entry hook: a bundle ociapp-build made hands `main()` its app module, and `--app`
// naming that module takes it from there instead of importing the app's file (which would load a
// second SDK and zod beside the bundled ones).

const TESTS = fileURLToPath(new URL(".", import.meta.url));

class Bundled extends Application {
  request = z.object({});
  response = z.object({});
  async execute() {
    return {};
  }
}

function bundledApp(
  module: string,
  namespace: () => Record<string, unknown>,
): BundledApp & { loads: number } {
  const hook = {
    module,
    loads: 0,
    load: async () => {
      hook.loads++;
      return namespace();
    },
  };
  return hook;
}

describe("loadApp with a bundled app", () => {
  it("takes the module from the bundle when --app names it (also as ./path), without importing the file", async () => {
    const app = new Bundled();
    for (const spec of ["fixtures/echo-app.mjs#echo", "./fixtures/echo-app.mjs#echo"]) {
      const hook = bundledApp("fixtures/echo-app.mjs", () => ({ echo: app }));
      const loaded = await loadApp(spec, TESTS, hook);
      expect(loaded.app).toBe(app);
      expect(hook.loads).toBe(1);
      expect(loaded.file).toBe(`${TESTS}fixtures/echo-app.mjs`);
    }
  });

  it("imports the file when --app names another module", async () => {
    const hook = bundledApp("fixtures/other.mjs", () => ({}));
    const loaded = await loadApp("fixtures/echo-app.mjs#echo", TESTS, hook);
    expect(hook.loads).toBe(0);
    expect(loaded.app.constructor.name).toBe("EchoApplication");
  });

  it("checks the bundled module as an imported one, listing its exports sorted as Node does", async () => {
    const hook = bundledApp("fixtures/echo-app.mjs", () => ({ zeta: 1, Bundled, alpha: new Bundled() }));
    await expect(loadApp("fixtures/echo-app.mjs#app", TESTS, hook)).rejects.toThrow(
      'app module fixtures/echo-app.mjs has no export "app" (it exports: Bundled, alpha, zeta): use "fixtures/echo-app.mjs#alpha"',
    );
  });

  it("a module that throws while loading is serve's one-line load error", async () => {
    const hook = bundledApp("fixtures/echo-app.mjs", () => {
      throw new Error("no database\nat line 2");
    });
    await expect(loadApp("fixtures/echo-app.mjs#echo", TESTS, hook)).rejects.toMatchObject({
      code: "OCIAPP_APP_MODULE_LOAD",
      message: "cannot load app module fixtures/echo-app.mjs: no database",
    });
  });
});
