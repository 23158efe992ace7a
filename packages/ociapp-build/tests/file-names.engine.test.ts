import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readArtifactIndex } from "ociapp/artifact";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "./helpers/cli.js";

// Strings that reach the artifact's path against the real docker CLI and buildx. buildx reads
// `--output type=oci,dest=<path>` as one CSV record: a line break in <path> used to end the record,
// and buildx wrote the artifact to the path's first line. A package name "victim\nx" in a project
// built into out/ overwrote out/victim with an 86 MiB tarball; so did an output folder "o\nut" for
// a file "o" beside it. Both are custom-mode projects whose Containerfile only names the base image
// (present locally), so nothing is fetched.

let work = "";
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ociapp-build-file-names-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function project(name: string): Promise<string> {
  const dir = join(work, `project-${(await readdir(work)).length}`);
  await mkdir(dir);
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a Containerfile's ${...}, not JavaScript's
  await writeFile(join(dir, "Containerfile"), "ARG OCIAPP_BASE_IMAGE\nFROM ${OCIAPP_BASE_IMAGE}\n");
  await writeFile(
    join(dir, "package.json"),
    JSON.stringify({ name, version: "0.1.0", ociapp: { mode: "custom", containerfile: "Containerfile" } }),
  );
  return dir;
}

describe("package names reach no file but the artifact's", () => {
  it("a name with a newline is refused before buildx runs, and nothing is written", async () => {
    const out = join(work, "out");
    await mkdir(out);
    await writeFile(join(out, "victim"), "precious");
    const root = await project("victim\nx");
    const result = await runCli([root, "--output-dir", out, "--progress", "plain"]);
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toBe("");
    // One line, and no buildx progress before it: the build never started.
    expect(result.stderr).toBe(
      `ociapp-build: error: ${join(root, "package.json")}: "name" "victim\\u000ax" is not a valid npm package name: it holds a space or a control character\n`,
    );
    expect(await readdir(out)).toEqual(["victim"]);
    expect(await readFile(join(out, "victim"), "utf8")).toBe("precious");
  });

  it("an output folder with a newline in its name gets the artifact; the file its first line names is untouched", async () => {
    const bystander = join(work, "o");
    await writeFile(bystander, "precious");
    const out = join(work, "o\nut");
    const result = await runCli([
      await project("tiny"),
      "--output-dir",
      out,
      "--progress",
      "quiet",
      "--json",
    ]);
    expect(result.exitCode).toBe(0);
    expect(await readFile(bystander, "utf8")).toBe("precious");
    expect(await readdir(out)).toEqual(["tiny-0.1.0.ociapp"]);
    // --json is one line: the path's newline is escaped (and parses back).
    expect(result.stdout.trimEnd().split("\n")).toHaveLength(1);
    const { path, digest } = JSON.parse(result.stdout) as { path: string; digest: string };
    expect(path).toBe(join(out, "tiny-0.1.0.ociapp"));
    expect((await readArtifactIndex(path)).digest).toBe(digest);
  });
});
