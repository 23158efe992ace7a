import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BuildError, build } from "../src/index.js";
import { runCli } from "./helpers/cli.js";
import { type TempProject, tempProject } from "./helpers/projects.js";

// The build loads the entrypoint inside the image (`ociapp check`) and fails with one line when it
// does not name an Application: managed mode always, custom mode when its image starts serve.

let managed: TempProject | undefined;
let custom: TempProject | undefined;
let outputDir = "";
const MODULE = `import { Application } from "ociapp";
import { z } from "zod";

export class GreeterApp extends Application {
  request = z.object({ name: z.string() });
  response = z.object({ greeting: z.string() });
  async execute(request) {
    return { greeting: "hello " + request.name };
  }
}
`;

beforeAll(async () => {
  managed = await tempProject("check-app", { install: true });
  custom = await tempProject("custom-app");
  outputDir = await mkdtemp(join(tmpdir(), "ociapp-build-check-out-"));
});

afterAll(async () => {
  await managed?.cleanup();
  await custom?.cleanup();
  if (outputDir) await rm(outputDir, { recursive: true, force: true });
});

async function failedBuild(projectRoot: string): Promise<BuildError> {
  const error = await build({ projectRoot, outputDir, network: "host" }).catch((caught: unknown) => caught);
  expect(error).toBeInstanceOf(BuildError);
  return error as BuildError;
}

describe("managed mode", () => {
  it("a default export: one line from the CLI naming the module, the export, what it exports, and the fix", async () => {
    const dir = managed?.dir ?? "";
    await writeFile(join(dir, "main.mjs"), `${MODULE}export default new GreeterApp();\n`);
    const result = await runCli([dir, "--output-dir", outputDir, "--network", "host"]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr.trim().split("\n").at(-1)).toBe(
      'ociapp-build: error: the app fails its check in the image: app module main.mjs has no export "app" (it exports: GreeterApp, default): name the default export (export const app = new MyApp()); the entrypoint is <module>#<export>, the export "app" when left out',
    );
    // Progress lines (not a terminal: one per phase), then the one error line: nothing after it.
    expect(result.stderr).toMatch(/^\[ociapp-build\] checking the app's entrypoint \(ociapp check\)$/m);
    expect(result.stderr).not.toMatch(/^ {2}\| /m);
    expect(await readdir(outputDir)).toEqual([]);
  });

  it("a class instead of an instance", async () => {
    const dir = managed?.dir ?? "";
    await writeFile(join(dir, "main.mjs"), MODULE);
    const error = await failedBuild(dir);
    expect(error.code).toBe("OCIAPP_BUILD_APP_INVALID");
    expect(error.message).toBe(
      'the app fails its check in the image: app module main.mjs has no export "app" (it exports: GreeterApp): GreeterApp is an Application class: export an instance (export const app = new GreeterApp())',
    );
    expect(await readdir(outputDir)).toEqual([]);
  });
});

describe("custom mode", () => {
  it("checks an image that starts ociapp serve, as its own user and in its own folder", async () => {
    const dir = custom?.dir ?? "";
    const source = await readFile(join(dir, "main.mjs"), "utf8");
    await writeFile(
      join(dir, "main.mjs"),
      source.replace("export const app = ", "export const application = "),
    );
    const error = await failedBuild(dir);
    expect(error.code).toBe("OCIAPP_BUILD_APP_INVALID");
    expect(error.message).toBe(
      'the app fails its check in the image: app module main.mjs has no export "app" (it exports: application): use "main.mjs#application"',
    );
    expect(await readdir(outputDir)).toEqual([]);
  });

  it("does not check an image that does not start ociapp serve", async () => {
    const dir = custom?.dir ?? "";
    const containerfile = join(dir, "Containerfile.custom");
    const text = await readFile(containerfile, "utf8");
    await writeFile(containerfile, text.replace(/^CMD .*$/m, 'CMD ["node", "main.mjs"]'));
    const result = await build({ projectRoot: dir, outputDir, network: "host" });
    expect(result.path).toBe(join(outputDir, "custom-app-0.2.0.ociapp"));
    await rm(result.path);
  });
});
