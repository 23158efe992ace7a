import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TestClient } from "./helpers/client.js";
import { buildInstalledCopy, type InstalledCopy } from "./helpers/dist.js";
import { BEHAVIOUR_APP, killAll, PACKAGE_DIR, startCli } from "./helpers/server-process.js";

let installed: InstalledCopy;

beforeAll(() => {
  installed = buildInstalledCopy();
});

afterAll(async () => {
  await killAll();
  if (installed) rmSync(installed.root, { recursive: true, force: true });
});

/** Runs the installed bin expecting it to fail before binding; returns its one stderr line. */
async function failingServe(args: string[], options: { env?: Record<string, string> } = {}): Promise<string> {
  const server = await startCli(args, {
    waitForListening: false,
    bin: installed.bin,
    cwd: installed.root,
    ...(options.env ? { env: options.env } : {}),
  });
  const { code } = await server.exited;
  expect(code).toBe(1);
  // It fails before binding: no socket file was ever made.
  expect(existsSync(server.socketPath)).toBe(false);
  const lines = server.stderr().trim().split("\n");
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

describe.concurrent("the ociapp bin, installed", () => {
  it("serves a JavaScript app that imports the installed SDK", async () => {
    const server = await startCli(["--app", "app/echo-app.mjs#echo"], {
      bin: installed.bin,
      cwd: installed.root,
    });
    try {
      const client = await TestClient.connect(server.socketPath);
      expect(await client.request("1", { value: "from dist" })).toEqual({
        type: "response",
        id: "1",
        payload: { value: "from dist" },
      });
      client.close();
    } finally {
      server.child.kill("SIGTERM");
    }
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });

  it("loads a TypeScript app through tsx, and recognises an Application from another copy of the SDK", async () => {
    // The bin runs the installed dist; the app extends the Application of the workspace sources.
    const server = await startCli(["--app", BEHAVIOUR_APP], {
      bin: installed.bin,
      cwd: PACKAGE_DIR,
      nodeArgs: ["--conditions=source"],
    });
    try {
      const client = await TestClient.connect(server.socketPath);
      expect((await client.hello).app).toEqual({ name: "behaviour", version: "1.2.3" });
      expect(await client.request("1", { op: "echo", value: "ts" })).toMatchObject({
        payload: { value: "ts" },
      });
      client.close();
    } finally {
      server.child.kill("SIGTERM");
    }
    expect(await server.exited).toEqual({ code: 0, signal: null });
  });
});

describe.concurrent("ociapp serve load errors: one line on stderr, exit 1, no socket", () => {
  it("a missing module", async () => {
    const line = await failingServe(["--app", "app/nope.js#app"]);
    expect(line).toBe(
      `ociapp: app module app/nope.js not found (looked for ${join(installed.root, "app/nope.js")})`,
    );
  });

  it("the app spec from OCIAPP_APP", async () => {
    const line = await failingServe([], { env: { OCIAPP_APP: "app/nope.mjs#app" } });
    expect(line).toBe(
      `ociapp: app module app/nope.mjs not found (looked for ${join(installed.root, "app/nope.mjs")})`,
    );
  });

  it("a module that throws while loading", async () => {
    const line = await failingServe(["--app", "app/throws-on-import.mjs"]);
    expect(line).toBe("ociapp: cannot load app module app/throws-on-import.mjs: boom while importing");
  });

  it("a missing export (the export defaults to app)", async () => {
    const line = await failingServe(["--app", "app/echo-app.mjs"]);
    expect(line).toBe(
      'ociapp: app module app/echo-app.mjs has no export "app" (it exports: echo): use "app/echo-app.mjs#echo"',
    );
    const named = await failingServe(["--app", "app/echo-app.mjs#missing"]);
    expect(named).toBe(
      'ociapp: app module app/echo-app.mjs has no export "missing" (it exports: echo): use "app/echo-app.mjs#echo"',
    );
  });

  it("an export that is not an Application", async () => {
    const line = await failingServe(["--app", "app/not-apps.mjs#notAnApp"]);
    expect(line).toBe(
      'ociapp: export "notAnApp" of app/not-apps.mjs is not an ociapp Application (got a plain object)',
    );
  });

  it("an Application class exported instead of an instance", async () => {
    const line = await failingServe(["--app", "app/not-apps.mjs#EchoApplication"]);
    expect(line).toBe(
      'ociapp: export "EchoApplication" of app/not-apps.mjs is an Application class, not an instance: export an instance (export const app = new EchoApplication()) and name that export: app/not-apps.mjs#app',
    );
  });

  it("an Application without schemas", async () => {
    const line = await failingServe(["--app", "app/not-apps.mjs#schemaLess"]);
    expect(line).toBe(
      "ociapp: Application SchemaLess has no request schema: declare `readonly request = z.object({ ... })` (a zod 4 schema)",
    );
  });

  it("a TypeScript app where tsx cannot be found", async () => {
    // No tsx above the temporary folder, and the installed SDK has none in its production dependencies.
    // Node 20 refuses the .ts file; Node 22.18+ strips its types and cannot find ./missing-loader-app.js.
    const line = await failingServe(["--app", "app/missing-loader.ts"]);
    expect(line).toMatch(
      /^ociapp: app module app\/missing-loader\.ts is TypeScript and tsx is not installed( \(Node's own type stripping failed: .*missing-loader-app\.js.*\))?: add tsx, or point --app at the built JavaScript$/,
    );
    if (process.versions.node.startsWith("20.")) expect(line).not.toContain("type stripping");
  });

  it("an invalid option value, from a flag or the environment, names the option and the value", async () => {
    const fromFlag = await failingServe(["--app", "app/echo-app.mjs#echo", "--max-concurrency", "0"]);
    expect(fromFlag).toContain("option '--max-concurrency <n>' argument '0' is invalid");
    const fromEnv = await failingServe(["--app", "app/echo-app.mjs#echo"], {
      env: { OCIAPP_MAX_FRAME_BYTES: "lots" },
    });
    expect(fromEnv).toContain("'lots' from env 'OCIAPP_MAX_FRAME_BYTES' is invalid");
  });

  it("a socket path whose folder cannot be created", async () => {
    const line = await failingServe(["--app", "app/echo-app.mjs#echo", "--socket", "/proc/nope/app.sock"]);
    expect(line).toBe(
      "ociapp: cannot use socket path /proc/nope/app.sock: cannot create its folder /proc/nope: ENOENT: no such file or directory",
    );
  });

  it("a socket path taken by something that is not a socket", async () => {
    const line = await failingServe(["--app", "app/echo-app.mjs#echo", "--socket", "app"]);
    expect(line).toBe(`ociapp: socket path ${join(installed.root, "app")} exists and is not a socket`);
  });
});
