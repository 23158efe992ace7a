import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BuildError, build } from "../src/index.js";
import { runCli, runCliHere } from "./helpers/cli.js";
import { FIXTURES } from "./helpers/paths.js";

// User mistakes print one line (plus the failing command's output where there is one) and exit 1,
// and leave nothing behind in the output folder. None of these reach the engine.

let work = "";
let outputDir = "";
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ociapp-build-errors-"));
  outputDir = join(work, "out");
  await mkdir(outputDir);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const fixture = (name: string) => join(FIXTURES, "errors", name);

/** A project in a temporary folder (outside the repository, so no node_modules above it resolve). */
async function project(name: string, packageJson: object | string, files: Record<string, string> = {}) {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, "package.json"),
    typeof packageJson === "string" ? packageJson : JSON.stringify(packageJson),
  );
  for (const [path, content] of Object.entries(files)) {
    await mkdir(join(dir, path, ".."), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  return dir;
}

/** A stand-in for an installed SDK: enough files for the checks that run before any packing. */
const BUILT_SDK = {
  "node_modules/ociapp/package.json": JSON.stringify({ name: "ociapp", version: "0.1.0" }),
  "node_modules/ociapp/dist/index.js": "",
  "node_modules/ociapp/dist/cli.js": "",
  "node_modules/ociapp/bin/ociapp.js": "",
};

/**
 * Runs the CLI in this process, or as a real child process (exit code and all) when `child` is set,
 * which the cases that need their own environment use.
 */
async function expectCliError(args: string[], message: string | RegExp, child?: { env?: NodeJS.ProcessEnv }) {
  const argv = [...args, "--output-dir", outputDir, "--progress", "quiet"];
  const result = child ? await runCli(argv, child) : await runCliHere(argv);
  expect(result.exitCode).toBe(1);
  expect(result.stdout).toBe("");
  const [first = "", ...rest] = result.stderr.trimEnd().split("\n");
  expect(first).toMatch(
    typeof message === "string" ? new RegExp(`^ociapp-build: error: .*${escapeRegExp(message)}`) : message,
  );
  for (const line of rest) expect(line).toMatch(/^ {2}\| /); // only the failing command's output follows
  expect(await readdir(outputDir)).toEqual([]);
  return result;
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("ociapp-build <project-root> errors", () => {
  it("no package.json", async () => {
    await expectCliError([fixture("no-package-json")], "no package.json in", {});
    await expectCliError([join(work, "does-not-exist")], "does not exist or is not a directory");
  });

  it("package.json that is not JSON", async () => {
    await expectCliError([await project("broken-json", "{ name: oops")], "package.json is not valid JSON");
  });

  it('no "ociapp" config', async () => {
    await expectCliError([fixture("no-config")], 'has no "ociapp" configuration');
  });

  it("invalid config: an unknown key, a wrong type", async () => {
    await expectCliError(
      [fixture("unknown-key")],
      /^ociapp-build: error: invalid config in .*package\.json: ociapp: unknown key "systemPackage"$/,
    );
    await expectCliError([fixture("wrong-type")], 'ociapp.systemPackages: expected array, got "jq"');
  });

  it("a custom containerfile that does not exist", async () => {
    await expectCliError(
      [fixture("missing-containerfile")],
      'ociapp.containerfile "Containerfile.nope" does not exist',
    );
  });

  it("docker not found", async () => {
    await expectCliError([fixture("failing-build")], "docker not found on PATH", {
      env: { ...process.env, PATH: join(work, "empty-path") },
    });
  });

  it("the app does not resolve the SDK", async () => {
    const dir = join(work, "no-sdk");
    await cp(fixture("no-sdk"), dir, { recursive: true });
    await expectCliError([dir], "does not resolve the ociapp SDK");
  });

  it("the SDK it resolves is not built", async () => {
    const dir = await project(
      "sdk-not-built",
      { name: "a", version: "1.0.0", ociapp: { entrypoint: "main.mjs" } },
      { "node_modules/ociapp/package.json": JSON.stringify({ name: "ociapp", version: "0.1.0" }) },
    );
    await expectCliError(
      [dir],
      /the ociapp SDK at .* is not built \(dist\/index\.js is missing\): build it first/,
    );
  });

  it("the app's build script fails, with its output", async () => {
    const dir = await project(
      "script-fails",
      {
        name: "a",
        version: "1.0.0",
        scripts: { build: "node -e \"console.error('src/main.ts: error TS2304'); process.exit(2)\"" },
        ociapp: { entrypoint: "dist/main.js" },
      },
      BUILT_SDK,
    );
    const result = await expectCliError(
      [dir, "--progress", "quiet"],
      "the app's build script failed (npm run build exited with 2)",
    );
    expect(result.stderr).toContain("  | src/main.ts: error TS2304");
  });

  it("a failing step's output keeps its lines but not its terminal controls", async () => {
    // The script clears the screen, then tries to overwrite the "  | " prefix and forge a line of ours.
    const script = String.raw`process.stderr.write("\u001b[2Jfirst\rociapp-build: done\nsecond\u009b1m\n"); process.exit(2)`;
    const dir = await project(
      "script-controls",
      {
        name: "a",
        version: "1.0.0",
        scripts: { build: `node -e '${script}'` },
        ociapp: { entrypoint: "x.js" },
      },
      BUILT_SDK,
    );
    const result = await expectCliError([dir], "the app's build script failed");
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters stderr must not carry
    expect(result.stderr).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    expect(result.stderr).toContain("  | \\u001b[2Jfirst\\u000dociapp-build: done\n  | second\\u009b1m");
  });

  it("the entrypoint module is not among the app's files", async () => {
    const dir = await project(
      "no-entrypoint",
      { name: "a", version: "1.0.0", files: ["lib"], ociapp: { entrypoint: "dist/main.js#app" } },
      { ...BUILT_SDK, "dist/main.js": "export const app = 1;" },
    );
    await expectCliError(
      [dir],
      'the entrypoint module dist/main.js is not among the app\'s files (is it built? is it included by "files"',
    );
  });

  it("other local dependencies", async () => {
    const dir = await project(
      "local-dep",
      {
        name: "a",
        version: "1.0.0",
        dependencies: { lib: "link:../lib" },
        ociapp: { entrypoint: "main.mjs" },
      },
      { ...BUILT_SDK, "main.mjs": "" },
    );
    await expectCliError([dir], 'dependencies.lib is "link:../lib", a local package');
  });

  it("invalid flags name the flag and the value", async () => {
    const result = await runCli([fixture("no-config"), "--progress", "fancy"]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr.trim()).toBe(
      "ociapp-build: error: option '--progress <mode>' argument 'fancy' is invalid. Allowed choices are auto, plain, quiet.",
    );
    // The inspect subcommand's commander errors carry the prefix too.
    const inspect = await runCliHere(["inspect"]);
    expect(inspect).toMatchObject({ exitCode: 1, stdout: "" });
    expect(inspect.stderr).toBe("ociapp-build: error: missing required argument 'file'\n");
  });
});

describe("build() errors carry stable codes", () => {
  it.each([
    ["no-package-json", "OCIAPP_BUILD_NO_PACKAGE_JSON"],
    ["no-config", "OCIAPP_BUILD_NO_CONFIG"],
    ["unknown-key", "OCIAPP_BUILD_INVALID_CONFIG"],
    ["wrong-type", "OCIAPP_BUILD_INVALID_CONFIG"],
    ["missing-containerfile", "OCIAPP_BUILD_CONTAINERFILE_MISSING"],
  ])("%s -> %s", async (name, code) => {
    const error = await build({ projectRoot: fixture(name), outputDir }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BuildError);
    expect((error as BuildError).code).toBe(code);
  });

  it("docker not found -> OCIAPP_BUILD_DOCKER_NOT_FOUND", async () => {
    const error = await build({
      projectRoot: fixture("failing-build"),
      outputDir,
      env: { PATH: join(work, "empty-path") },
    }).catch((caught: unknown) => caught);
    expect((error as BuildError).code).toBe("OCIAPP_BUILD_DOCKER_NOT_FOUND");
  });

  it("an engine that does not answer -> OCIAPP_BUILD_ENGINE_UNAVAILABLE", async () => {
    const error = await build({
      projectRoot: fixture("failing-build"),
      outputDir,
      env: { DOCKER_HOST: `unix://${join(work, "no-engine.sock")}` },
    }).catch((caught: unknown) => caught);
    expect((error as BuildError).code).toBe("OCIAPP_BUILD_ENGINE_UNAVAILABLE");
    expect((error as BuildError).message).toMatch(/^the Docker engine is not reachable \(.*\): start it/);
    expect(await readdir(outputDir)).toEqual([]);
  });

  it("invalid options name the option and the value", async () => {
    const cases: [object, string][] = [
      [{ progress: "loud" }, 'invalid progress "loud": expected auto | plain | quiet'],
      [{ compression: "lz4" }, 'invalid compression "lz4": expected gzip | zstd'],
      [{ network: "host; rm" }, 'invalid network "host; rm"'],
      [{ image: "Upper/Case" }, 'invalid image "Upper/Case"'],
      [{ projectRoot: "" }, 'invalid projectRoot ""'],
    ];
    for (const [options, message] of cases) {
      const error = await build({ projectRoot: fixture("no-config"), ...options }).catch(
        (caught: unknown) => caught,
      );
      expect((error as BuildError).code).toBe("OCIAPP_BUILD_INVALID_OPTION");
      expect((error as BuildError).message).toContain(message);
    }
  });

  it("an output folder that cannot be made", async () => {
    const file = join(work, "a-file");
    await writeFile(file, "");
    const error = await build({ projectRoot: fixture("failing-build"), outputDir: join(file, "out") }).catch(
      (caught: unknown) => caught,
    );
    expect((error as BuildError).code).toBe("OCIAPP_BUILD_INVALID_OPTION");
    expect((error as BuildError).message).toMatch(
      /^invalid outputDir ".*a-file\/out": cannot create it \(ENOTDIR\)$/,
    );
  });

  it("an aborted signal", async () => {
    const error = await build({ projectRoot: fixture("no-config"), signal: AbortSignal.abort() }).catch(
      (caught: unknown) => caught,
    );
    expect((error as BuildError).code).toBe("OCIAPP_BUILD_ABORTED");
  });
});
