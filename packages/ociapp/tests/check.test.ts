import { execFile } from "node:child_process";
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInstalledCopy, type InstalledCopy } from "./helpers/dist.js";

// `ociapp check --app <module#export>`: serve's loading and its one-line errors, then exit. What
// ociapp-build runs inside the image it builds.

let installed: InstalledCopy;

beforeAll(() => {
  installed = buildInstalledCopy();
});

afterAll(() => {
  if (installed) rmSync(installed.root, { recursive: true, force: true });
});

function check(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [installed.bin, "check", ...args],
      { cwd: installed.root, env: { ...process.env, ...env }, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = (error as { code?: unknown } | null)?.code;
        resolve({ code: typeof code === "number" ? code : error ? 1 : 0, stdout, stderr });
      },
    );
  });
}

/** The one stderr line of a failing check (exit 1). */
async function failing(args: string[]): Promise<string> {
  const result = await check(args);
  expect(result.code).toBe(1);
  const lines = result.stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  return lines[0] ?? "";
}

describe.concurrent("ociapp check", () => {
  it("exits 0 with one line for an Application", async () => {
    const result = await check(["--app", "app/echo-app.mjs#echo"]);
    expect(result).toMatchObject({ code: 0, stdout: "" });
    expect(result.stderr).toBe(
      "ociapp: app/echo-app.mjs#echo: an Application (EchoApplication), ready to serve\n",
    );
  });

  it("reads the app from OCIAPP_APP, as serve does", async () => {
    const result = await check([], { OCIAPP_APP: "app/echo-app.mjs#echo" });
    expect(result.code).toBe(0);
  });

  it("a missing export names the module, the export and what it exports, and the one to use", async () => {
    expect(await failing(["--app", "app/echo-app.mjs#application"])).toBe(
      'ociapp: app module app/echo-app.mjs has no export "application" (it exports: echo): use "app/echo-app.mjs#echo"',
    );
  });

  it("a default export: name it", async () => {
    expect(await failing(["--app", "app/default-export.mjs"])).toBe(
      'ociapp: app module app/default-export.mjs has no export "app" (it exports: default): name the default export (export const app = new MyApp()); the entrypoint is <module>#<export>, the export "app" when left out',
    );
  });

  it("only a class exported: export an instance", async () => {
    expect(await failing(["--app", "app/class-export.mjs#app"])).toBe(
      'ociapp: app module app/class-export.mjs has no export "app" (it exports: GreeterApp): GreeterApp is an Application class: export an instance (export const app = new GreeterApp())',
    );
    expect(await failing(["--app", "app/class-export.mjs#GreeterApp"])).toBe(
      'ociapp: export "GreeterApp" of app/class-export.mjs is an Application class, not an instance: export an instance (export const app = new GreeterApp()) and name that export: app/class-export.mjs#app',
    );
  });

  it("a module that throws, or is missing", async () => {
    expect(await failing(["--app", "app/throws-on-import.mjs"])).toBe(
      "ociapp: cannot load app module app/throws-on-import.mjs: boom while importing",
    );
    expect(await failing(["--app", "app/nope.mjs"])).toMatch(/^ociapp: app module app\/nope\.mjs not found/);
  });

  it("without --app", async () => {
    expect(await failing([])).toBe("ociapp: required option '--app <module#export>' not specified");
  });
});
