import { access, chmod, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BuildError, build } from "../src/index.js";
import { runCliHere } from "./helpers/cli.js";

// package.json's name and version become the artifact's file name and a buildx CSV field: a name
// with a newline once made buildx overwrite another file in the output folder. They are refused
// while the project is read, before any tool runs: a `docker` on PATH that records its calls shows it
// (the engine test file-names.engine.test.ts does the same build against the real engine).

let work = "";
let outputDir = "";
let spyPath = "";
let dockerCalls = "";
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ociapp-build-identity-"));
  outputDir = join(work, "out");
  await mkdir(outputDir);
  await writeFile(join(outputDir, "victim"), "precious");
  spyPath = join(work, "bin");
  dockerCalls = join(work, "docker-calls");
  await mkdir(spyPath);
  await writeFile(join(spyPath, "docker"), `#!/bin/sh\necho "$@" >> '${dockerCalls}'\nexit 1\n`);
  await chmod(join(spyPath, "docker"), 0o755);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

let counter = 0;
/** A custom-mode project (nothing to pack, no SDK needed) with this name and version. */
async function project(fields: Record<string, unknown>): Promise<string> {
  const dir = join(work, `project-${++counter}`);
  await mkdir(dir);
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a Containerfile's ${...}, not JavaScript's
  await writeFile(join(dir, "Containerfile"), "ARG OCIAPP_BASE_IMAGE\nFROM ${OCIAPP_BASE_IMAGE}\n");
  const pkg = {
    name: "app",
    version: "1.0.0",
    ...fields,
    ociapp: { mode: "custom", containerfile: "Containerfile" },
  };
  await writeFile(join(dir, "package.json"), JSON.stringify(pkg));
  return dir;
}

async function expectRefused(fields: Record<string, unknown>, message: string): Promise<void> {
  const projectRoot = await project(fields);
  const error = await build({ projectRoot, outputDir, env: { PATH: spyPath } }).catch(
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(BuildError);
  expect((error as BuildError).code).toBe("OCIAPP_BUILD_INVALID_PACKAGE_JSON");
  expect((error as Error).message).toBe(`${join(projectRoot, "package.json")}: ${message}`);
  const calls = await access(dockerCalls).then(
    () => true,
    () => false,
  );
  expect(calls, "docker was run").toBe(false);
  expect(await readdir(outputDir)).toEqual(["victim"]);
}

describe("names and versions npm would refuse are refused before anything runs", () => {
  it("a name with a newline (buildx wrote the artifact over out/victim)", async () => {
    await expectRefused(
      { name: "victim\nx" },
      '"name" "victim\\u000ax" is not a valid npm package name: it holds a space or a control character',
    );
  });

  it("a name that is a path, uppercase, too long or escapes the terminal", async () => {
    const npm = "is not a valid npm package name";
    await expectRefused({ name: "../victim" }, `"name" "../victim" ${npm}: it starts with "."`);
    await expectRefused(
      { name: "a/../../victim" },
      `"name" "a/../../victim" ${npm}: it holds characters npm does not allow (a-z, 0-9, "-", "." and "_", after an optional "@scope/")`,
    );
    await expectRefused(
      { name: "MyApp" },
      `"name" "MyApp" ${npm}: it has uppercase letters (npm names are lowercase)`,
    );
    await expectRefused(
      { name: "a".repeat(300) },
      `"name" "${"a".repeat(77)}..." ${npm}: it is 300 characters long, over npm's 214`,
    );
    await expectRefused(
      { name: "\u001b[2J\u009b" },
      `"name" "\\u001b[2J\\u009b" ${npm}: it holds a space or a control character`,
    );
  });

  it("a version that is not semver", async () => {
    const semver = 'it is not a semver version such as "1.2.3" or "1.2.3-rc.1"';
    await expectRefused(
      { version: "1.0.0\n../victim" },
      `"version" "1.0.0\\u000a../victim" is not a valid version: ${semver}`,
    );
    await expectRefused({ version: "../1.0.0" }, `"version" "../1.0.0" is not a valid version: ${semver}`);
    await expectRefused({ version: "1.0" }, `"version" "1.0" is not a valid version: ${semver}`);
  });

  it("a name and a version that together make too long a file name", async () => {
    await expectRefused(
      { name: "a".repeat(214), version: `1.0.0-${"b".repeat(40)}` },
      '"name" and "version" make the artifact\'s file name 268 characters long, over the 234 a file name leaves room for: shorten them',
    );
  });

  it("a dependency whose name is a path", async () => {
    await expectRefused(
      { dependencies: { "../../x": "1.0.0" } },
      'dependencies "../../x" is not a valid npm package name: it starts with "."',
    );
  });

  it("the CLI prints it as one line", async () => {
    const projectRoot = await project({ name: "victim\nx\u001b[2J" });
    const result = await runCliHere([projectRoot, "--output-dir", outputDir, "--progress", "quiet"]);
    expect(result).toEqual({
      exitCode: 1,
      stdout: "",
      stderr: `ociapp-build: error: ${join(projectRoot, "package.json")}: "name" "victim\\u000ax\\u001b[2J" is not a valid npm package name: it holds a space or a control character\n`,
    });
    expect(await readdir(outputDir)).toEqual(["victim"]);
  });
});
